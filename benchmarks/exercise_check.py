"""How long checking a student's residual block, bottleneck and small ResNet takes: the checks alone (in this process),
and a whole `exercise check` of a file (a fresh limited process: Python, torch, the student's
file, the checks). Goal (2-core CPU): a whole check within a few seconds (<= 5 s).

Run: `python benchmarks/exercise_check.py` (prints a table; `--out FILE.json` also writes it
with the machine and versions).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_exercise_nets import NET_FILE, Stages  # noqa: E402
from test_exercises import SOLUTION, Identity, _bneck  # noqa: E402

from resnet_core.exercises import check  # noqa: E402
from resnet_core.exercises.sandbox import judge_file  # noqa: E402

GOAL_S = 5.0


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "residual_block.py"
        path.write_text(SOLUTION)
        net_path = Path(folder) / "simple_resnet.py"
        net_path.write_text(NET_FILE)
        rows = [
            (
                "checks in this process",
                timed(lambda: check("residual_block", Identity), args.repeats),
            ),
            (
                "exercise check of a file",
                timed(lambda: judge_file("residual_block", path), args.repeats),
            ),
            ("bottleneck checks", timed(lambda: check("bottleneck", _bneck()), args.repeats)),
            (
                "net checks in this process",
                timed(lambda: check("simple_resnet", Stages), args.repeats),
            ),
            (
                "exercise check of a net file",
                timed(lambda: judge_file("simple_resnet", net_path), args.repeats),
            ),
        ]
    machine = f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# {machine}, {time.strftime('%Y-%m-%d')}")
    print(f"{'what':28s} {'median s':>9s} {'max s':>7s} {'goal':>5s}  ok")
    for what, times in rows:
        median, worst = statistics.median(times), max(times)
        print(
            f"{what:28s} {median:9.2f} {worst:7.2f} {GOAL_S:5.1f}  {'yes' if worst <= GOAL_S else 'no'}"
        )
    if args.out:
        record = {
            "machine": machine,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "rows": [{"what": w, "seconds": t} for w, t in rows],
        }
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
