"""Shape traces: what each layer does to the tensor, with parameters and multiply-adds.

`trace_shapes` is built on torchinfo (one row per leaf layer). torchinfo cannot see the
residual add, which is a tensor operation rather than a module, so `trace_blocks` folds the
same rows into one per block and says which shortcut each block adds back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from resnet_core.common.errors import first_line
from resnet_core.common.modes import model_mode
from resnet_core.nets.block_kinds import BLOCK_KINDS
from resnet_core.nets.model import CONV_UNITS, ResidualBlock, build_model, model_spec
from resnet_core.nets.spec import SpecError

__all__ = ["trace_shapes", "trace_blocks", "normalize_input_size"]

MAX_SIDE = 1024
TRACE_COLUMNS = ["layer", "type", "depth", "input_shape", "output_shape", "params", "mult_adds"]


def _expected_channels(model: nn.Module) -> int | None:
    spec = model_spec(model)
    if spec is not None:
        return spec.in_channels
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def normalize_input_size(model: nn.Module, input_size: Sequence[int] | str) -> tuple[int, ...]:
    """Validate an input size such as (1, 3, 32, 32), (3, 32, 32) or "3x32x32".

    Raises:
        SpecError: wrong number of dimensions, wrong channel count, or a size too small for
            the network's downsampling (or too large to trace interactively).
    """
    if isinstance(input_size, str):
        try:
            input_size = tuple(int(part) for part in input_size.lower().split("x"))
        except ValueError:
            raise SpecError(
                f"input: {input_size!r} is not a size; write channels x height x width, e.g. 3x32x32"
            ) from None
    size = tuple(input_size)
    if len(size) == 3:
        size = (1, *size)
    if len(size) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        raise SpecError(
            f"input: {tuple(input_size)!r} is not an image size; give (N, C, H, W) or (C, H, W) integers"
        )
    batch, channels, height, width = size
    if batch < 1 or batch > 64:
        raise SpecError(f"input: batch size {batch} is not allowed; use 1 to 64")
    expected = _expected_channels(model)
    if expected is not None and channels != expected:
        raise SpecError(
            f"input: {channels} channels, but this network takes {expected} "
            f"(e.g. {expected}x{height}x{width})"
        )
    spec = model_spec(model)
    smallest = spec.min_input_size() if spec is not None else 1
    for name, side in (("height", height), ("width", width)):
        if side < smallest:
            raise SpecError(
                f"input: {name} {side} is too small for this network, which downsamples "
                f"{smallest}x; use at least {smallest}x{smallest}"
            )
        if side > MAX_SIDE:
            raise SpecError(f"input: {name} {side} is too large to trace; use at most {MAX_SIDE}")
    return size


def _shape_twin(model: nn.Module) -> tuple[nn.Module, str]:
    """A model to trace and the device to trace it on.

    Shapes, parameter counts and multiply-adds do not depend on weight values, so a network
    built from a spec is traced as a weightless twin on the meta device: tracing ResNet-152
    at 224x224 then costs no arithmetic. Other models are traced on the CPU (a copy, if they
    live elsewhere, since torchinfo moves the model it traces).
    """
    spec = model_spec(model)
    if spec is not None:
        with torch.device("meta"):
            return build_model(spec), "meta"
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type == "cpu":
        return model, "cpu"
    return copy.deepcopy(model).cpu(), "cpu"


def trace_shapes(
    model: nn.Module, input_size: Sequence[int] | str = (1, 3, 32, 32)
) -> pd.DataFrame:
    """Trace tensor shapes through every leaf layer, in forward order.

    Args:
        model: a network from `build_model` (or any CNN taking images).
        input_size: (N, C, H, W), (C, H, W) or "CxHxW".

    Returns:
        DataFrame with columns layer (module path), type, depth, input_shape, output_shape
        (lists), params and mult_adds (per call of the layer).

    Raises:
        SpecError: the input size does not fit the network.
    """
    import torchinfo  # imported here: only tracing needs it

    size = normalize_input_size(model, input_size)
    traced, device = _shape_twin(model)
    names = {id(module): name for name, module in traced.named_modules()}
    try:
        with model_mode(traced, traced.training):  # torchinfo leaves it in eval mode
            stats = torchinfo.summary(
                traced,
                input_size=size,
                device=device,
                verbose=0,
                col_names=("input_size", "output_size", "num_params", "mult_adds"),
                cache_forward_pass=False,
                mode="eval",
            )
    except RuntimeError as error:  # shapes were validated; anything left is reported plainly
        raise SpecError(f"input: the network cannot run on {size}: {first_line(error)}") from None
    rows = []
    for info in stats.summary_list:
        if not info.is_leaf_layer:
            continue
        rows.append(
            {
                "layer": names.get(id(info.module), info.var_name),
                "type": info.class_name,
                "depth": info.depth,
                "input_shape": list(info.input_size),
                "output_shape": list(info.output_size),
                "params": 0 if info.is_recursive else int(info.num_params),
                "mult_adds": int(info.macs),
            }
        )
    return pd.DataFrame(rows, columns=TRACE_COLUMNS)


def _block_kind(module: nn.Module) -> str:
    """The registered kind whose module built this block ("conv" for a baseline's unit)."""
    for kind in BLOCK_KINDS.values():
        if type(module) is kind.module_class():
            return kind.name
    return "conv"


def _blocks(model: nn.Module) -> list[tuple[str, int, nn.Module]]:
    """(path, stage, module) of every block: residual blocks, or the baseline's conv units."""
    blocks = []
    stage_names = getattr(model, "stage_names", None)
    if stage_names:
        for stage, name in enumerate(stage_names, start=1):
            for position, block in enumerate(getattr(model, name)):
                blocks.append((f"{name}.{position}", stage, block))
        return blocks
    stage = 1
    for name, module in model.named_modules():
        if isinstance(module, CONV_UNITS):
            blocks.append((name, stage, module))
        elif isinstance(module, nn.MaxPool2d) and blocks:
            stage += 1
    return blocks


def _add_text(kind: str, shortcut: str) -> str:
    """The sum a block of `kind` computes, as text ("" where it adds nothing)."""
    if shortcut == "projection" and kind in BLOCK_KINDS:
        return BLOCK_KINDS[kind].projection
    return _ADD_TEXT.get(shortcut, "")


def _shortcut(block: nn.Module) -> str:
    kind = getattr(block, "shortcut_kind", None)
    if kind is None or kind == "none":
        return "none" if isinstance(block, ResidualBlock) else ""
    return kind if getattr(block, "downsample", None) is not None else "identity"


_ADD_TEXT = {
    "identity": "out + x",
    "projection": "out + BN(conv1x1(x))",
    "zero_pad": "out + zero_pad(x)",
}


def _rows_under(layers: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The trace rows of the module at `prefix` and of every module inside it."""
    mask = (layers["layer"] == prefix) | layers["layer"].str.startswith(prefix + ".")
    return layers[mask]


def _summarise(name: str, stage: int, kind: str, part: pd.DataFrame, shortcut: str = "") -> dict:
    """One row of the block table from the trace rows `part` of a block, stem, pool or head."""
    in_shape = part["input_shape"].iloc[0]
    out_shape = part["output_shape"].iloc[-1]
    return {
        "name": name,
        "stage": stage,
        "kind": kind,
        "input_shape": in_shape,
        "output_shape": out_shape,
        "shortcut": shortcut,
        "add": _add_text(kind, shortcut),
        "downsamples": len(in_shape) == 4 and len(out_shape) == 4 and out_shape[2] < in_shape[2],
        "params": int(part["params"].sum()),
        "mult_adds": int(part["mult_adds"].sum()),
    }


def _block_spans(
    layers: pd.DataFrame, blocks: list[tuple[str, int, nn.Module]]
) -> tuple[list[tuple[int, dict]], list[int], pd.Series]:
    """(first trace row, summary) of every block, the last trace row of each, and which trace
    rows the blocks claim."""
    claimed = pd.Series(False, index=layers.index)
    spans, ends = [], []
    for name, stage, block in blocks:
        part = _rows_under(layers, name)
        claimed |= layers.index.isin(part.index)
        summary = _summarise(name, stage, _block_kind(block), part, _shortcut(block))
        spans.append((part.index.min(), summary))
        ends.append(part.index.max())
    return spans, ends, claimed


def _pool_spans(
    between: pd.DataFrame, block_spans: list[tuple[int, dict]]
) -> list[tuple[int, dict]]:
    """(trace row, summary) of each layer between blocks (the baseline CNN's max-pools), in
    the stage of the block before it."""
    stage_at = {start: row["stage"] for start, row in block_spans}
    spans = []
    for index, row in between.iterrows():
        stage = max(s for i, s in stage_at.items() if i < index)
        spans.append((index, _summarise(row.layer, stage, "pool", between.loc[[index]])))
    return spans


def trace_blocks(
    model: nn.Module, input_size: Sequence[int] | str = (1, 3, 32, 32)
) -> pd.DataFrame:
    """One row per block, with the residual add that the layer trace cannot show.

    Args:
        model: a network from `build_model`.
        input_size: as for `trace_shapes`.

    Returns:
        DataFrame with columns index, name ("stem", "layer1.0", ..., "head"), stage (0 for
        the stem, 1..K for stages, K+1 for the head), kind, input_shape, output_shape,
        shortcut ("identity" | "projection" | "zero_pad" | "none" for a plain block | ""),
        add (the sum the block computes, "" where there is none), downsamples, params,
        mult_adds.
    """
    layers = trace_shapes(model, input_size)
    blocks = _blocks(model)
    block_spans, ends, claimed = _block_spans(layers, blocks)
    first = min((start for start, _ in block_spans), default=len(layers))
    last = max(ends, default=len(layers) - 1)
    free = layers[~claimed]
    stem = free[free.index < first]
    head = free[free.index > last]
    rows = []
    if len(stem):
        rows.append(_summarise("stem", 0, "stem", stem))
    # Layers between blocks (the baseline CNN's max-pools) get rows of their own.
    between = free[(free.index > first) & (free.index < last)]
    spans = sorted(block_spans + _pool_spans(between, block_spans), key=lambda item: item[0])
    rows.extend(row for _, row in spans)
    last_stage = max((stage for _, stage, _ in blocks), default=0)
    if len(head):
        rows.append(_summarise("head", last_stage + 1, "head", head))
    frame = pd.DataFrame(rows)
    frame.insert(0, "index", range(len(frame)))
    return frame
