"""Command line: `python -m resnet_core SUBCOMMAND`.

Subcommands: presets, trace, gradients (here); train, eval, runs (cli.train); export
(cli.export); experiment (cli.experiments); landscape (cli.landscape); lesion (cli.lesion);
exercise (cli.exercises); mechanisms (cli.mechanisms); app (cli.app).

Bad arguments print one line on stderr and exit with code 2; tables go to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from resnet_core.analysis.measure import IMAGENET_SIDE, imagenet_batch
from resnet_core.analysis.probes import grad_ratio, gradient_norms
from resnet_core.analysis.trace import trace_blocks, trace_shapes
from resnet_core.common.device import memory_budget
from resnet_core.common.errors import first_line
from resnet_core.common.files import read_regular_text
from resnet_core.nets.model import build_model
from resnet_core.nets.pretrained import load_weights, torchvision_arch
from resnet_core.nets.size import check_buildable, check_fits
from resnet_core.nets.spec import PRESET_INFO, ArchSpec, list_presets, resolve_spec

__all__ = ["main", "build_parser", "CliError"]

# Modules that add their own subcommands through `register(subparsers)`.
PLUGIN_MODULES = (
    "resnet_core.cli.train",
    "resnet_core.cli.export",  # after train: adds `runs export` to its `runs`
    "resnet_core.cli.experiments",
    "resnet_core.cli.landscape",
    "resnet_core.cli.lesion",
    "resnet_core.cli.exercises",
    "resnet_core.cli.mechanisms",
    "resnet_core.cli.app",
)


class CliError(ValueError):
    """A user error on the command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise CliError(f"{self.prog}: {message} (see --help)")


def _format_number(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def emit(frame: pd.DataFrame, fmt: str) -> None:
    """Write a frame to stdout as an aligned table, CSV or JSON records."""
    if fmt == "json":
        sys.stdout.write(frame.to_json(orient="records", indent=1) + "\n")
    elif fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        sys.stdout.write(frame.to_string(index=False) + "\n")


def _cmd_presets(args: argparse.Namespace) -> int:
    rows = []
    for name in list_presets():
        model = build_model(name)
        side = PRESET_INFO[name]["input_size"]
        mult_adds = int(trace_shapes(model, (1, 3, side, side))["mult_adds"].sum())
        params = sum(p.numel() for p in model.parameters())
        rows.append(
            {
                "name": name,
                "params": params if args.format == "json" else f"{params:,}",
                "mult_adds": mult_adds if args.format == "json" else _format_number(mult_adds),
                "input": f"3x{side}x{side}",
                "description": PRESET_INFO[name]["description"],
            }
        )
    emit(pd.DataFrame(rows), args.format)
    return 0


def load_spec_argument(value: str) -> ArchSpec:
    """A preset name, or a path to a spec JSON file."""
    if value.endswith(".json") or Path(value).is_file():
        path = Path(value)
        try:
            text = read_regular_text(path)
        except OSError as error:
            raise CliError(f"cannot read spec file {value}: {error.strerror}") from None
        spec = ArchSpec.from_json(text)
    else:
        spec = resolve_spec(value)
    check_buildable(spec)  # refused before a single weight is allocated
    return spec


def _cmd_trace(args: argparse.Namespace) -> int:
    spec = load_spec_argument(args.model)
    model = build_model(spec)
    frame = (trace_blocks if args.blocks else trace_shapes)(model, args.input)
    emit(frame, args.format)
    return 0


def _gradient_net(
    name: str, args: argparse.Namespace
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The net `name` (Kaiming init with the seed, or carrying --weights) and a seeded batch:
    noise at 32x32, or at 224x224 with ImageNet class targets for ImageNet weights."""
    spec = load_spec_argument(name)
    if args.weights:
        torchvision_arch(spec)  # only the -imagenet presets take ImageNet weights
    side = IMAGENET_SIDE if args.weights else 32
    check_fits(spec, args.batch, side, memory_budget(), "this machine")
    torch.manual_seed(args.seed)
    model = build_model(spec)
    if args.weights:
        load_weights(model, args.weights, download=True, progress=sys.stderr.isatty())
        return (model, *imagenet_batch(None, None, args.batch, args.seed, side))
    generator = torch.Generator().manual_seed(args.seed)
    inputs = torch.randn(args.batch, spec.in_channels, side, side, generator=generator)
    return model, inputs, torch.randint(0, spec.num_classes, (args.batch,), generator=generator)


def _cmd_gradients(args: argparse.Namespace) -> int:
    frames = []
    summary = []
    for name in args.models:
        model, inputs, targets = _gradient_net(name, args)
        frame = gradient_norms(model, inputs, targets)
        frame.insert(0, "model", name)
        frames.append(frame)
        summary.append(f"{name}: first conv / last conv gradient norm = {grad_ratio(frame):,.1f}x")
    emit(pd.concat(frames, ignore_index=True), args.format)
    if args.format == "table":
        where = f"with ImageNet weights ({args.weights})" if args.weights else "at initialisation"
        size = IMAGENET_SIDE if args.weights else 32
        summary.append(f"{where}, on {args.batch} noise images of {size}x{size}")
        sys.stdout.write("\n".join(summary) + "\n")
    return 0


def _input_size(text: str) -> str:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not CxHxW, e.g. 3x32x32")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


MAX_SEED = 2**31 - 1


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number between low and high (for the subcommands' flags)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} must be between {low} and {high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m resnet_core", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    formats = ("table", "csv", "json")

    presets = subparsers.add_parser("presets", help="list presets with parameters and mult-adds")
    presets.add_argument("--format", choices=("table", "json"), default="table")
    presets.set_defaults(func=_cmd_presets)

    trace = subparsers.add_parser("trace", help="layer-by-layer shapes of a preset or spec file")
    trace.add_argument("model", metavar="NAME|SPEC.json")
    trace.add_argument(
        "--input", type=_input_size, default="3x32x32", help="CxHxW (default 3x32x32)"
    )
    trace.add_argument(
        "--blocks", action="store_true", help="one row per block, with the residual adds"
    )
    trace.add_argument("--format", choices=formats, default="table")
    trace.set_defaults(func=_cmd_trace)

    grads = subparsers.add_parser(
        "gradients", help="per-layer gradient norms at initialisation (or with --weights)"
    )
    grads.add_argument("models", nargs="+", metavar="NAME")
    grads.add_argument("--batch", type=_positive, default=64)
    grads.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0)
    grads.add_argument("--format", choices=formats, default="table")
    grads.add_argument(
        "--weights",
        metavar="imagenet|FILE",
        help="for -imagenet presets: torchvision's ImageNet weights ('imagenet': its cache, "
        "downloaded once if missing) or a torchvision-style state dict file (.pth)",
    )
    grads.set_defaults(func=_cmd_gradients)

    for module_name in PLUGIN_MODULES:  # a misspelt name raises: no command drops silently
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except (ValueError, CliError) as error:  # SpecError, ConfigError, RunError, DatasetNotFound
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        sys.stderr.write(f"error: {message}\n")
        return 2
    except OSError as error:  # a folder that is a file, a read-only disk, ...
        where = f"{error.filename}: " if error.filename else ""
        sys.stderr.write(f"error: {where}{error.strerror or first_line(error)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
