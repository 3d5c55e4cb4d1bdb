"""How long each mechanism takes to measure at depth 110 on this machine (goal on 2 CPU cores:
a few seconds, <= 5 s each): shattered gradients along 64 points, gradients by path length
(every third length, 2 paths each, 8 images), branch variance of every block (32 images).

Run: `python benchmarks/mechanisms.py` (prints a table; `--out FILE.json` also writes it with
the machine and versions).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_core.analysis.mechanisms import (  # noqa: E402
    branch_variance,
    path_gradients,
    shattered_gradients,
)
from resnet_core.nets.model import build_model  # noqa: E402

GOAL_S = 5.0


def _images(count: int) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(0))


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depth", type=int, default=110, choices=(20, 56, 110))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    plain, residual = build_model(f"plain{args.depth}"), build_model(f"resnet{args.depth}")
    line, eight, many = _images(2), _images(8), _images(32)
    labels = torch.arange(8) % 10
    rows = [
        (f"shatter plain{args.depth}", lambda: shattered_gradients(plain, line[0], line[1])),
        (f"shatter resnet{args.depth}", lambda: shattered_gradients(residual, line[0], line[1])),
        (f"paths resnet{args.depth}", lambda: path_gradients(residual, eight, labels)),
        (f"variance resnet{args.depth}", lambda: branch_variance(residual, many)),
    ]
    results = [(what, timed(fn, args.repeats)) for what, fn in rows]
    machine = f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# {machine}, {time.strftime('%Y-%m-%d')}")
    print(f"{'what':22s} {'median s':>9s} {'max s':>7s} {'goal':>5s}  ok")
    for what, times in results:
        median, worst = statistics.median(times), max(times)
        ok = "yes" if worst <= GOAL_S else "no"
        print(f"{what:22s} {median:9.2f} {worst:7.2f} {GOAL_S:5.1f}  {ok}")
    if args.out:
        record = {
            "machine": machine,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "rows": [{"what": w, "seconds": t} for w, t in results],
        }
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
