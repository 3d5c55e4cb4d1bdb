"""`python -m resnet_core mechanisms shatter|paths|variance NET...`: three mechanisms measured
on freshly initialised nets (`resnet_core.analysis.mechanisms`), one row per measurement.

- `shatter`: the neighbour correlation of the input gradient along a line of inputs, per net
  and seed (Balduzzi et al. 2017);
- `paths`: the input gradient through paths that pass k residual branches, per k (Veit et al.
  2016, Fig. 6);
- `variance`: per block, the variance of the residual branch against the skip (De & Smith
  2020).

The inputs are Gaussian images drawn from `--seed` (no data set needed); each net is built
from its seed. The table goes to stdout; `--out FILE.csv` or `FILE.json` also writes it
(never over an existing file).
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import pandas as pd
import torch

from resnet_core.analysis.mechanisms import branch_variance, path_gradients, shattered_gradients
from resnet_core.cli.main import MAX_SEED, CliError, emit, whole_number
from resnet_core.common.files import check_output, json_bytes, write_new
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import SpecError, resolve_spec

__all__ = ["register"]

KINDS = ("shatter", "paths", "variance")


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


def _cmd(args: argparse.Namespace) -> int:
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
    parser.add_argument("nets", nargs="+", metavar="NET", help="preset names or spec files")
    parser.add_argument("--seeds", type=whole_number(1, 20), default=1, help="seeds per net")
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED - 20), default=0)
    parser.add_argument("--points", type=whole_number(3, 512), default=64, help="shatter: points on the line")  # fmt: skip
    parser.add_argument("--images", type=whole_number(2, 256), default=16, help="paths, variance: images")  # fmt: skip
    parser.add_argument("--samples", type=whole_number(1, 50), default=2, help="paths: paths per length")  # fmt: skip
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--out", default=None, help="also write FILE.csv or FILE.json")
    parser.set_defaults(func=_cmd)
