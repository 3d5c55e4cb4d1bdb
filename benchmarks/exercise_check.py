"""How long checking a student's residual block, bottleneck and small ResNet takes: the checks alone (in this process),
and a whole `exercise check` of a file (a fresh limited process: Python, torch, the student's
file, the checks). Goal (2-core CPU): a whole check within a few seconds (<= 5 s).

Run: `python benchmarks/exercise_check.py` (prints a table; `--out FILE.json` also writes it
with the machine and versions).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_exercise_nets import NET_FILE, Stages  # noqa: E402
from test_exercises import SOLUTION, Identity, _bneck  # noqa: E402
from timing import report, timed  # noqa: E402

from resnet_core.exercises import check  # noqa: E402
from resnet_core.exercises.sandbox import judge_file  # noqa: E402

GOAL_S = 5.0


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
    report(rows, GOAL_S, args.out, width=28)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
