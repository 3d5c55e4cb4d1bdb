"""ONNX export of any net: a file to open in Netron (https://netron.app) or run elsewhere.

The export uses PyTorch's TorchScript-based exporter (`dynamo=False`), which needs only the
`onnx` package and gives the same graph on every torch release from 2.4 on. The model is
exported in eval mode (BatchNorm uses its running statistics) with a dynamic batch axis, so
one file takes any number of images.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from resnet_core.common.device import memory_budget
from resnet_core.common.files import limit_address_space, read_regular_bytes
from resnet_core.nets.model import build_model, model_spec
from resnet_core.nets.size import check_params, estimate_training_bytes, fmt_bytes
from resnet_core.nets.spec import PRESET_INFO, ArchSpec, SpecError, resolve_spec, spec_label

__all__ = [
    "ExportError",
    "MAX_ONNX_PARAMS",
    "ONNX_OPSET",
    "check_exportable",
    "input_side",
    "to_onnx",
    "to_onnx_apart",
]

ONNX_OPSET = 17  # read by onnxruntime >= 1.11 and every Netron
# Peak memory of an export over `estimate_training_bytes` of one image: ResNet-152 at
# 1024x1024 was measured at 22 GB against an estimate of 7.2 GB (factor 3), and 4 leaves room.
EXPORT_MEMORY_FACTOR = 4
# What one ONNX download may cost the app's server, shared by a class: up to ResNet-50 at
# 224x224; bigger nets are exported with the CLI on one's own machine.
SERVER_EXPORT_BYTES = 3 * 10**9
MAX_ONNX_PARAMS = 64_000_000  # a 256 MB file: ResNet-152 (60 M) fits, bigger is no download
INPUT_NAME, OUTPUT_NAME = "images", "logits"
# What the exporter says about itself, not about the net (torch >= 2.9; zero_pad's x[..., ::2]).
_EXPORTER_NOTICES = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
    "Constant folding - Only steps=1",
)


class ExportError(SpecError):
    """A net that cannot be exported (too big for a file one downloads)."""


def input_side(spec: ArchSpec) -> int:
    """The input side a net is meant for (a preset's own, 224 for ImageNet stems, else 32),
    or the smallest it can take when it downsamples more than that."""
    label = spec_label(spec)
    if label in PRESET_INFO:
        return int(PRESET_INFO[label]["input_size"])
    return max(224 if spec.stem == "imagenet" else 32, spec.min_input_size())


def check_exportable(spec: ArchSpec, side: int | None = None, budget: int | None = None) -> None:
    """Raise ExportError if the net is too big to export as one ONNX file, or exporting it at
    `side` x `side` would need more memory than `budget` bytes (default: this machine's
    `memory_budget`)."""
    check_params(spec, MAX_ONNX_PARAMS, "for an ONNX export", ExportError)
    side = input_side(spec) if side is None else side
    budget = memory_budget() if budget is None else budget
    needed = EXPORT_MEMORY_FACTOR * estimate_training_bytes(spec, 1, side)
    if needed > budget:
        raise ExportError(
            f"memory: exporting this net at {side}x{side} needs about {fmt_bytes(needed)}, "
            f"more than the {fmt_bytes(budget)} allowed here (a smaller input or net fits)"
        )


def _export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.onnx.export with a dynamic batch axis; the exporter's notices about itself are
    silenced, warnings about the net are not."""
    with warnings.catch_warnings():
        for message in _EXPORTER_NOTICES:
            warnings.filterwarnings("ignore", message=message)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def to_onnx(
    net: str | ArchSpec | nn.Module, side: int | None = None, budget: int | None = None
) -> bytes:
    """An ONNX model of a net: input "images" (N, C, side, side), output "logits" (N, classes).

    Args:
        net: a preset name, an ArchSpec, or a model built by `build_model` (its weights are
            kept; a name or spec is built with fresh initial weights).
        side: the input's height and width; default `input_side(spec)`.
        budget: bytes the export may use (default: this machine's `memory_budget`).

    Returns:
        The model file's bytes (protobuf), batch axis dynamic.

    Raises:
        ExportError: the net is over MAX_ONNX_PARAMS, or its export over `budget`.
        SpecError: an unknown preset or invalid spec.
    """
    if isinstance(net, nn.Module):
        model, spec = net, model_spec(net)
        if spec is None:
            raise SpecError("only nets built by resnet_core can be exported")
    else:
        spec = resolve_spec(net)
        check_exportable(spec, side, budget)  # refused before a single weight is allocated
        model = build_model(spec)
    check_exportable(spec, side, budget)  # a model handed in is checked too
    side = input_side(spec) if side is None else side
    example = torch.zeros(1, spec.in_channels, side, side)
    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory(prefix="resnet-onnx-") as folder:
            path = Path(folder) / "model.onnx"
            _export(model, example.to(next(model.parameters()).device), path)
            return read_regular_bytes(path)
    finally:
        model.train(was_training)


def to_onnx_apart(spec: ArchSpec, side: int, budget: int, timeout: float = 600) -> bytes:
    """`to_onnx` of a spec (fresh weights) in a process of its own, its address space capped
    at `budget` bytes over what it starts with: what a shared server calls, so that the
    export's memory is never the server's (it is all returned when the process ends) and one
    export cannot starve the others.

    Raises:
        ExportError: the net is too big for `budget`, or the export failed (its last line).
    """
    check_exportable(spec, side, budget)  # refused here, before a process is started
    with tempfile.TemporaryDirectory(prefix="resnet-onnx-") as folder:
        out = Path(folder) / "model.onnx"
        command = [sys.executable, "-m", __name__, spec.to_json(), str(side), str(out), str(budget)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ExportError(f"the export took over {timeout:.0f} s and was stopped") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise ExportError(f"the export failed ({lines[-1] if lines else done.returncode})")
        return read_regular_bytes(out)


if __name__ == "__main__":  # the process of `to_onnx_apart`: SPEC_JSON SIDE OUT BUDGET
    _spec, _side, _out, _budget = sys.argv[1:5]
    limit_address_space(int(_budget))
    Path(_out).write_bytes(to_onnx(ArchSpec.from_json(_spec), int(_side), int(_budget)))
