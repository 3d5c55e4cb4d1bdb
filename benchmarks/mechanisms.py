"""How long each mechanism takes to measure at depth 110 on this machine (goal on 2 CPU cores:
a few seconds, <= 5 s each): shattered gradients along 64 points, gradients by path length
(every third length, 2 paths each, 8 images), branch variance of every block (32 images).

Run: `python benchmarks/mechanisms.py` (prints a table; `--out FILE.json` also writes it with
the machine and versions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import report, timed  # noqa: E402

from resnet_core.analysis.mechanisms import (  # noqa: E402
    branch_variance,
    path_gradients,
    shattered_gradients,
)
from resnet_core.nets.model import build_model  # noqa: E402

GOAL_S = 5.0


def _images(count: int) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(0))


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
    report(results, GOAL_S, args.out, width=22)
    return 0


if __name__ == "__main__":
    sys.exit(main())
