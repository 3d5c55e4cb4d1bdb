"""`python -m resnet_core landscape RUN_DIR...`: a trained run's training loss along
filter-normalised random directions (Li et al. 2018, https://arxiv.org/abs/1712.09913).

Progress goes to stderr, the table to stdout; `--out FILE.csv` also writes FILE.json with the
command, settings, hardware, torch version, date and seconds per net.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from resnet_core.cli.main import MAX_SEED, emit, whole_number
from resnet_core.common.device import resolve_device
from resnet_core.common.env import default_data_dir
from resnet_core.training.data import load_cifar10

__all__ = ["register"]


def _progress(net: str) -> Callable[[int, int], None]:
    """A one-line progress report on stderr, overwritten in place."""

    def report(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r  {net}: {done}/{total} points{end}")
        sys.stderr.flush()

    return report


def _cmd_landscape(args: argparse.Namespace) -> int:
    # here, not above: the chart modules need altair, which the other commands do without
    from resnet_core.views.landscape import check_run, result_record, run_landscape, write_result

    for run_dir in args.runs:  # every run checked before the data is loaded or a point computed
        check_run(run_dir)
    device = resolve_device(args.device)
    dataset = load_cifar10(args.data_dir or default_data_dir())
    frames, seconds = [], {}
    for run_dir in args.runs:
        start = time.perf_counter()
        frame = run_landscape(
            run_dir,
            dataset,
            args.dims,
            args.grid,
            args.images,
            args.seed,
            device,
            _progress(Path(run_dir).name),
        )
        seconds[str(frame["net"].iloc[0])] = time.perf_counter() - start
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True)
    if args.out:
        settings = {"dims": args.dims, "grid": args.grid, "images": args.images, "seed": args.seed}
        settings |= {"range": [-1.0, 1.0], "split": "train", "bn": "eval (running statistics)"}
        command = " ".join(["python -m resnet_core", *map(shlex.quote, sys.argv[1:])])
        write_result(result, args.out, result_record(command, settings, seconds))
        sys.stderr.write(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}\n")
    emit(result, args.format)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "landscape", help="training loss around a run's weights (Li et al. 2018)"
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders with best.pt")
    parser.add_argument("--dims", type=int, choices=(1, 2), default=1, help="1-D slice or 2-D grid")
    parser.add_argument(
        "--grid", type=whole_number(3, 101), default=21, help="points per axis over [-1, 1]"
    )
    parser.add_argument(
        "--images", type=whole_number(1, 50_000), default=200, help="training images used"
    )
    parser.add_argument(
        "--seed", type=whole_number(0, MAX_SEED), default=0, help="seeds the directions and images"
    )
    parser.add_argument("--device", default="cpu", help="cpu, auto, cuda, cuda:N or mps")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder")
    parser.add_argument("--out", default=None, metavar="FILE.csv", help="also write CSV + JSON")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.set_defaults(func=_cmd_landscape)
