"""`export` and `runs export` subcommands of `python -m resnet_core`: open formats out.

`export NET --format onnx [--out FILE]` writes a net as an ONNX file (for Netron or any ONNX
runtime); `runs export RUN --tensorboard DIR` writes a run's metrics as TensorBoard event
files, and `runs export RUN --onnx FILE` its trained net (best.pt, or last.pt with
`--checkpoint last`). Nothing is overwritten: an existing FILE, or a DIR that holds files,
is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from resnet_core.cli.main import CliError, load_spec_argument, whole_number
from resnet_core.common.files import check_output, write_new
from resnet_core.nets.onnx_export import ONNX_OPSET, check_exportable, input_side, to_onnx
from resnet_core.training.runs import load_run
from resnet_core.training.tensorboard_export import export_tensorboard

__all__ = ["register", "add_runs_export", "cmd_export", "cmd_runs_export"]

MAX_SIDE = 1024  # an input side beyond this is no image this app trains on


def register(subparsers: Any) -> None:
    """Add `export`, and `runs export` under the `runs` subcommand (registered before this)."""
    export = subparsers.add_parser(
        "export",
        help="write a preset or spec file as an ONNX model (open it in Netron)",
        description="Write a net (fresh initial weights) as an ONNX model whose batch axis is "
        "dynamic. An existing output file is refused.",
    )
    export.add_argument("model", metavar="NAME|SPEC.json")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="default onnx")
    export.add_argument("--out", default=None, help="output file (default: NAME.onnx here)")
    export.add_argument(
        "--side",
        type=whole_number(1, MAX_SIDE),
        default=None,
        help="input height and width (default: the net's own, 32 or 224)",
    )
    export.set_defaults(func=cmd_export)
    if "runs" in subparsers.choices:
        add_runs_export(subparsers.choices["runs"])


def add_runs_export(runs_parser: argparse.ArgumentParser) -> None:
    """Add `runs export RUN --tensorboard DIR --onnx FILE` under the `runs` subcommand."""
    actions = runs_parser.add_subparsers(
        dest="runs_action", metavar="{export}", parser_class=type(runs_parser)
    )
    export = actions.add_parser(
        "export",
        help="write a run's metrics as TensorBoard event files, or its net as ONNX",
        description="Write every scalar of a run's metrics.jsonl as TensorBoard event files "
        "(view them with `tensorboard --logdir DIR`; DIR must be new or empty), and/or the "
        "trained net as an ONNX model (FILE must not exist).",
    )
    export.add_argument("run", metavar="RUN", help="run folder or run id")
    export.add_argument("--tensorboard", metavar="DIR", default=None, help="output folder")
    export.add_argument("--onnx", metavar="FILE", default=None, help="output .onnx file")
    export.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="weights for --onnx: best.pt (default) or last.pt",
    )
    # SUPPRESS: a --root given before `export` is kept
    export.add_argument("--root", "--runs-root", dest="root", default=argparse.SUPPRESS)
    export.set_defaults(func=cmd_runs_export)


def _default_out(model: str) -> Path:
    """NAME.onnx in the current folder (for a spec file: its name without .json)."""
    name = Path(model).stem if model.endswith(".json") else Path(model).name
    return Path(f"{name}.onnx")


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of `export`."""
    spec = load_spec_argument(args.model)
    side = input_side(spec) if args.side is None else args.side
    if side < spec.min_input_size():
        raise CliError(f"--side {side}: this net needs images of at least {spec.min_input_size()}")
    check_exportable(spec, side)  # size and memory, before a weight is allocated
    out = check_output(Path(args.out) if args.out else _default_out(args.model))
    data = to_onnx(spec, side)
    _write_new(out, data)
    print(
        f"wrote {out} ({len(data) / 1e6:.1f} MB, ONNX opset {ONNX_OPSET}): input 'images' "
        f"Nx{spec.in_channels}x{side}x{side}, output 'logits'; open it in Netron"
    )
    return 0


def _write_new(out: Path, data: bytes) -> None:
    """Write `data` to `out` unless a file appeared there while it was made."""
    try:
        write_new(out, lambda stream: stream.write(data))
    except FileExistsError:
        raise CliError(f"{out}: appeared while the export ran; nothing replaced") from None


def _export_run_onnx(args: argparse.Namespace) -> None:
    out = check_output(args.onnx)  # before the run is read
    model, info = load_run(args.run, args.checkpoint, root=getattr(args, "root", None))
    data = to_onnx(model.to(memory_format=torch.contiguous_format))
    _write_new(out, data)
    print(
        f"wrote {out} ({len(data) / 1e6:.1f} MB, ONNX opset {ONNX_OPSET}): the trained net of "
        f"{info.id} ({args.checkpoint}.pt); open it in Netron"
    )


def cmd_runs_export(args: argparse.Namespace) -> int:
    """Handler of `runs export`."""
    if args.tensorboard is None and args.onnx is None:
        raise CliError("runs export: say what to write: --tensorboard DIR and/or --onnx FILE")
    if args.onnx is not None:
        _export_run_onnx(args)
    if args.tensorboard is not None:
        count = export_tensorboard(args.run, args.tensorboard, getattr(args, "root", None))
        print(
            f"wrote {count} values to {args.tensorboard}; "
            f"view: tensorboard --logdir {args.tensorboard}"
        )
    return 0
