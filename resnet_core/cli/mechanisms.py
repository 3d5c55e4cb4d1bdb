"""`python -m resnet_core mechanisms shatter|paths|variance NET...`: three mechanisms measured
on freshly initialised nets (`resnet_core.analysis.mechanisms`), one row per measurement.

- `shatter`: the neighbour correlation of the input gradient along a line of inputs, per net
  and seed (Balduzzi et al. 2017);
- `paths`: the input gradient through paths that pass k residual branches, per k (Veit et al.
  2016, Fig. 6);
- `variance`: per block, the variance of the residual branch against the skip (De & Smith
  2020);
- `study --out FOLDER [RUN_DIR...]`: all three on CIFAR-10 test images, every variant at
  depths 20, 56 and 110 (`resnet_core.studies.mechanisms`), and the paths of each trained
  RUN_DIR; the Mechanisms page and the lecture read the folder this writes.

For the first three, the inputs are Gaussian images drawn from `--seed` (no data set needed); each net is built
from its seed. The table goes to stdout; `--out FILE.csv` or `FILE.json` also writes it
(never over an existing file).
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from resnet_core.analysis.mechanisms import branch_variance, path_gradients, shattered_gradients
from resnet_core.cli.main import MAX_SEED, CliError, emit, whole_number
from resnet_core.common.env import default_data_dir
from resnet_core.common.files import check_output, json_bytes, write_new
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import SpecError, resolve_spec
from resnet_core.studies import mechanisms as study
from resnet_core.training.data import load_cifar10

__all__ = ["register"]

KINDS = ("shatter", "paths", "variance", "study")


def _images(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _net(name: str, seed: int) -> torch.nn.Module:
    try:
        spec = resolve_spec(name)
        torch.manual_seed(seed)
        return build_model(spec)
    except SpecError as error:
        raise CliError(str(error)) from None


def _rows(kind: str, name: str, seed: int, args: argparse.Namespace) -> pd.DataFrame:
    model = _net(name, seed)
    if kind == "shatter":
        start, end = _images(2, MAX_SEED - seed)
        found = shattered_gradients(model, start, end, points=args.points, seed=seed)
        frame = pd.DataFrame([{"correlation": found["correlation"]}])
    elif kind == "paths":
        images = _images(args.images, MAX_SEED - seed)
        labels = torch.arange(args.images) % 10
        frame = path_gradients(model, images, labels, samples=args.samples, seed=seed)
    else:
        frame = branch_variance(model, _images(args.images, MAX_SEED - seed))
    if frame.empty:
        raise CliError(f"{kind}: {name} has no residual additions to measure; pick a residual net")
    return frame.assign(net=name, seed=seed)[["net", "seed", *frame.columns]]


def _depths(text: str) -> list[int]:
    """'20,56,110' -> [20, 56, 110]: some of the depths every variant has a preset for."""
    try:
        depths = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give layers as whole numbers, e.g. 20,56,110") from None  # fmt: skip
    if not depths or any(d not in study.DEPTHS for d in depths):
        allowed = ",".join(map(str, study.DEPTHS))
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {allowed}")
    return sorted(set(depths))


def _study(args: argparse.Namespace) -> int:
    """All three mechanisms into the folder --out (the shipped study's files)."""
    if not args.out:
        raise CliError("study: name the folder to write with --out")
    folder = check_output(args.out)  # a new folder: nothing there is replaced
    trained = {}
    for run in args.nets:  # trained runs: read (or refused) before any work
        if not (Path(run) / "best.pt").is_file():
            raise CliError(f"study: {Path(run).name} is not a run folder with best.pt")
        trained[Path(run).name] = study.trained_net(run)
    data = load_cifar10(args.data_dir or default_data_dir())
    say = lambda line: sys.stderr.write(f"  {line}\n")  # noqa: E731
    frames, seconds, sample = study.run_study(
        data, trained, args.seeds, args.images, args.depths, on_progress=say
    )
    command = " ".join(["python -m resnet_core", *map(shlex.quote, sys.argv[1:])])
    settings = {"seeds": args.seeds, "images": args.images, "depths": args.depths}
    record = study.study_record(command, settings, seconds)
    for path in study.write_study(folder, frames, record, sample):
        sys.stderr.write(f"wrote {path}\n")
    emit(frames["shatter.csv"].groupby(["variant", "depth"], sort=False)["correlation"].mean().unstack().round(3).reset_index(), args.format)  # fmt: skip
    return 0


def _cmd(args: argparse.Namespace) -> int:
    if args.kind == "study":
        return _study(args)
    if not args.nets:
        raise CliError(f"{args.kind}: name at least one net")
    out = check_output(args.out) if args.out else None  # refused before any work
    if out is not None and out.suffix not in (".csv", ".json"):
        raise CliError(f"--out: {out.name} must end in .csv or .json")
    started = time.perf_counter()
    frames = [
        _rows(args.kind, name, seed, args)
        for name in args.nets
        for seed in range(args.seed, args.seed + args.seeds)
    ]
    table = pd.concat(frames, ignore_index=True)
    emit(table, args.format)
    if out is not None:
        if out.suffix == ".json":
            data = json_bytes(table.to_dict(orient="records"))
        else:
            buffer = io.StringIO()
            table.to_csv(buffer, index=False)
            data = buffer.getvalue().encode()
        write_new(out, lambda stream: stream.write(data))
    seconds = time.perf_counter() - started
    sys.stderr.write(f"{args.kind}: {len(frames)} measurement(s) in {seconds:.1f} s\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mechanisms",
        help="shattered gradients, short paths, branch variance of nets at init",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("nets", nargs="*", metavar="NET", help="preset names or spec files; for study, trained run folders")  # fmt: skip
    parser.add_argument("--seeds", type=whole_number(1, 20), default=1, help="seeds per net")
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED - 20), default=0)
    parser.add_argument("--points", type=whole_number(3, 512), default=64, help="shatter: points on the line")  # fmt: skip
    parser.add_argument("--images", type=whole_number(2, 256), default=16, help="paths, variance: images")  # fmt: skip
    parser.add_argument("--samples", type=whole_number(1, 50), default=2, help="paths: paths per length")  # fmt: skip
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--out", default=None, help="also write FILE.csv or FILE.json; study: a folder")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="study: CIFAR-10 folder")
    parser.add_argument("--depths", type=_depths, default=list(study.DEPTHS), help="study: layers, e.g. 20,56,110")  # fmt: skip
    parser.set_defaults(func=_cmd)
