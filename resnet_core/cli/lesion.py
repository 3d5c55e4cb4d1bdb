"""`python -m resnet_core lesion RUN_DIR ...`: delete blocks of trained nets and print what is
left of their test accuracy (Veit et al. 2016, https://arxiv.org/abs/1605.06431).

The sentences' module (resnet_core.views, which needs altair) loads only when the command
runs, so that the other commands run where no chart library is installed (a GPU box)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pandas as pd

from resnet_core.analysis.lesion import DEFAULT_DRAWS, DEFAULT_IMAGES, MAX_DRAWS
from resnet_core.analysis.sampling import SAMPLE_FILE
from resnet_core.cli.main import MAX_SEED, CliError, emit, whole_number
from resnet_core.common.device import resolve_device
from resnet_core.common.env import provenance
from resnet_core.common.files import check_output
from resnet_core.studies.datasets import run_test_set
from resnet_core.studies.lesion import (
    LesionResult,
    combine,
    lesion_labels,
    lesion_test_set,
    result_paths,
    run_lesion,
    write_results,
)

__all__ = ["register"]


def _progress(net: str):
    """Progress on stderr, one line per evaluation: the long runs say where they are."""

    def report(done: int, total: int, sentence: str) -> None:
        sys.stderr.write(f"  {net}: {done}/{total} {sentence}\n")

    return report


def _table(result: LesionResult) -> pd.DataFrame:
    """The single deletions as printed: accuracy and drop in percent, one row per block."""
    frame = result.single
    return pd.DataFrame(
        {
            "net": frame["net"],
            "block": frame["block"],
            "replaced_by": frame["replaced_by"],
            "accuracy_%": (100 * frame["accuracy"]).round(2),
            "intact_%": (100 * frame["intact"]).round(2),
            "drop_points": frame["drop"].round(2),
        }
    )


MAX_IMAGES = 10_000  # CIFAR-10's whole test set


def _cmd_lesion(args: argparse.Namespace) -> int:
    from resnet_core.views import lesion as views  # the sentences; needs altair

    device = resolve_device(args.device)
    if args.out:  # refused before any work: nothing is ever replaced
        for path in (*result_paths(args.out), Path(args.out).parent / SAMPLE_FILE):
            check_output(path)
    labels = lesion_labels(args.runs)  # every run checked before any is measured
    if args.out and len({run_test_set(run) for run in args.runs}) > 1:
        raise CliError(
            "lesion --out: these runs are judged on different test sets, so one sample.json "
            "cannot describe them; write each kind of run to its own folder"
        )
    datasets = {}  # one test set per kind of run
    results = []
    for run in args.runs:
        test_set = run_test_set(run)
        if test_set not in datasets:
            datasets[test_set] = lesion_test_set(run, args.data_dir)
        sys.stderr.write(f"{run}:\n")
        results.append(
            run_lesion(
                run,
                datasets[test_set],
                args.images,
                args.draws,
                args.seed,
                device,
                on_progress=_progress(labels[run]),
                label=labels[run],
            )
        )
    command = " ".join(["python -m resnet_core", *map(shlex.quote, sys.argv[1:])])
    result = combine(results, **provenance(command))
    if args.out:
        for path in write_results(result, args.out):
            sys.stderr.write(f"wrote {path}\n")
    emit(_table(result), args.format)
    if args.format == "table":
        story = [views.single_story(result.single), views.random_story(result.random)]
        sys.stdout.write("\n" + "\n".join(line for line in story if line) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lesion", help="test accuracy with blocks of a trained net deleted (Veit et al. 2016)"
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders with best.pt")
    parser.add_argument(
        "--images",
        type=whole_number(1, MAX_IMAGES),
        default=DEFAULT_IMAGES,
        help=f"test images, the same number of each class, seeded (default {DEFAULT_IMAGES})",
    )
    parser.add_argument(
        "--draws",
        type=whole_number(0, MAX_DRAWS),
        default=DEFAULT_DRAWS,
        help=f"random sets of k blocks per k (default {DEFAULT_DRAWS}; 0: single only)",
    )
    parser.add_argument(
        "--seed",
        type=whole_number(0, MAX_SEED),
        default=0,
        help="seed of the test images picked and of the draws",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="FILE.csv",
        help="also write FILE.csv, FILE-random.csv, FILE.json, and sample.json beside them",
    )
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.set_defaults(func=_cmd_lesion)
