"""`python -m resnet_core landscape RUN_DIR...`: a trained run's training loss along
filter-normalised random directions (Li et al. 2018, https://arxiv.org/abs/1712.09913).

Progress goes to stderr, the table to stdout; `--out FILE.csv` also writes FILE.json with the
command, settings, each curve's BatchNorm statistics, hardware, torch version, date and
seconds per net, and sample.json (the training images used) in the same folder.
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
from resnet_core.common.files import check_output
from resnet_core.studies.landscape import (
    BN_MODES,
    Sample,
    check_run,
    check_sample,
    curves_of,
    record_sample,
    result_record,
    run_landscape,
    training_sample,
    write_result,
)
from resnet_core.training.data import load_cifar10

__all__ = ["register"]


def _progress(net: str) -> Callable[[int, int], None]:
    """A one-line progress report on stderr, overwritten in place."""

    def report(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r  {net}: {done}/{total} points{end}")
        sys.stderr.flush()

    return report


def _measure_all(args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, float], Sample]:
    """Every run's curves on one sample of training images (drawn from the first run's
    training set: the shipped runs share theirs)."""
    device = resolve_device(args.device)
    dataset = load_cifar10(args.data_dir or default_data_dir())
    config = check_run(args.runs[0])
    sample = training_sample(dataset, config, args.images, args.seed, args.bn_images)
    if args.out:  # refused before a point is computed, not after
        check_sample(Path(args.out).parent, sample)
    seeds = range(args.seed, args.seed + args.seeds)
    bn_modes = BN_MODES if args.bn == "both" else (args.bn,)
    frames, seconds = [], {}
    for run_dir in args.runs:
        start = time.perf_counter()
        report = _progress(Path(run_dir).name)
        frame = run_landscape(
            run_dir, sample, args.dims, args.grid, seeds, bn_modes, device, report
        )
        seconds[str(frame["net"].iloc[0])] = time.perf_counter() - start
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), seconds, sample


def _settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "dims": args.dims,
        "grid": args.grid,
        "images": args.images,
        "bn_images": args.bn_images,
        "seed": args.seed,
        "seeds": args.seeds,
        "range": [-1.0, 1.0],
        "split": "train",
        "bn": args.bn,
    }


def _cmd_landscape(args: argparse.Namespace) -> int:
    if args.out:  # nothing is ever replaced
        check_output(args.out)
        check_output(Path(args.out).with_suffix(".json"))
    for run_dir in args.runs:  # every run checked before the data is loaded or a point computed
        check_run(run_dir)
    result, seconds, sample = _measure_all(args)
    if args.out:
        command = " ".join(["python -m resnet_core", *map(shlex.quote, sys.argv[1:])])
        record = result_record(command, _settings(args), seconds) | {"curves": curves_of(result)}
        sample_path = record_sample(Path(args.out).parent, sample)
        write_result(result, args.out, record)
        sys.stderr.write(
            f"wrote {args.out}, {Path(args.out).with_suffix('.json')}, {sample_path}\n"
        )
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
        "--bn-images",
        type=whole_number(1, 50_000),
        default=256,
        help="other training images the BatchNorm statistics are recomputed on at every point",
    )
    parser.add_argument(
        "--seed",
        type=whole_number(0, MAX_SEED),
        default=0,
        help="seeds the image picks and the first set of directions",
    )
    parser.add_argument(
        "--seeds", type=whole_number(1, 10), default=1, help="sets of directions: SEED, SEED+1, ..."
    )
    parser.add_argument(
        "--bn",
        choices=(*BN_MODES, "both"),
        default="recomputed",
        help="BatchNorm statistics: recomputed at every point (the measurement), stale (the "
        "trained weights' own, which distorts the loss), or both",
    )
    parser.add_argument("--device", default="cpu", help="cpu, auto, cuda, cuda:N or mps")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder")
    parser.add_argument("--out", default=None, metavar="FILE.csv", help="also write CSV + JSON")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.set_defaults(func=_cmd_landscape)
