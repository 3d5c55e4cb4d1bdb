"""Checks of a student's `ResidualBlock(in_channels, out_channels, stride=1)`, judged by what
it computes, not by what its parts are called.

Two blocks are built, one where the shapes match (16 -> 16, stride 1) and one where they
change (16 -> 32, stride 2), and probed: forward hooks see which convolutions and BatchNorms
run, in which order and with which stride; inputs with negative values show where the ReLU
is; zeroing the 3x3 convolutions leaves only the shortcut; weights copied into the reference
block (`resnet_core.nets.model.BasicBlock`) must give the same output. Each failed check
names the likely mistake with the number it measured.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from resnet_core.exercises.report import Report
from resnet_core.nets.model import BasicBlock

__all__ = [
    "check_residual_block",
    "check_plain_block",
    "load_into_reference",
    "settle",
    "traced",
    "SAME",
    "DOWN",
]

SAME = (16, 16, 1)  # (in_channels, out_channels, stride): the identity fits
DOWN = (16, 32, 2)  # channels double, the image halves: a projection is needed
SIDE = 8
TOLERANCE = 1e-4


def _name(args: tuple[int, int, int], cls: str = "ResidualBlock") -> str:
    return f"{cls}({args[0]}, {args[1]}, stride={args[2]})"


def probe_input(channels: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, channels, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


def traced(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[nn.Module]]:
    """The block's output and the convolutions and BatchNorms it ran, in order."""
    order: list[nn.Module] = []
    watched = [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for m in watched]
    try:
        with torch.no_grad():
            out = block(x)
    finally:
        for hook in hooks:
            hook.remove()
    return out, order


def settle(block: nn.Module, seed: int) -> nn.Module:
    """Eval mode, with BatchNorm statistics and affine parameters set from `seed`, so that
    every BatchNorm does something visible and the block is deterministic."""
    generator = torch.Generator().manual_seed(seed)
    block.eval()
    with torch.no_grad():
        for bn in (m for m in block.modules() if isinstance(m, nn.BatchNorm2d)):
            size = bn.num_features
            bn.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            if bn.affine:
                bn.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                bn.bias.copy_(torch.randn(size, generator=generator) * 0.1)
    return block


def convs_of_kind(order: list[nn.Module], kernel: int) -> list[nn.Conv2d]:
    return [m for m in order if isinstance(m, nn.Conv2d) and m.kernel_size == (kernel, kernel)]


def build_blocks(
    cls: type, report: Report, cases: tuple[tuple, tuple] = (SAME, DOWN)
) -> dict[tuple, nn.Module] | None:
    """The student's class built for each of `cases` (in_channels, width, stride), settled."""
    blocks = {}
    for args in cases:
        try:
            block = cls(args[0], args[1], stride=args[2])
        except Exception as error:  # noqa: BLE001 - the student's code: any error is a finding
            report.add(
                "builds",
                False,
                f"{_name(args, cls.__name__)} raised {type(error).__name__}: {error}",
            )
            return None
        if not isinstance(block, nn.Module):
            report.add("builds", False, f"{_name(args, cls.__name__)} is not an nn.Module")
            return None
        blocks[args] = settle(block, seed=1)
    names = " and ".join(_name(args, cls.__name__) for args in cases)
    report.add("builds", True, f"{names} build")
    return blocks


def check_shapes(
    blocks: dict[tuple, nn.Module], report: Report, expansion: int = 1
) -> dict[tuple, list[nn.Module]] | None:
    """Each block's output shape (`expansion` x width channels); the modules each ran."""
    orders = {}
    for args, block in blocks.items():
        expected = (2, args[1] * expansion, SIDE // args[2], SIDE // args[2])
        try:
            out, orders[args] = traced(block, probe_input(args[0]))
        except Exception as error:  # noqa: BLE001
            hint = (
                "; when channels or the stride change, the shortcut must change them too "
                "(a 1x1 conv with the stride, then BatchNorm)"
                if args[2] != 1
                else ""
            )
            report.add("runs", False, f"{_name(args, type(block).__name__)} failed on a {tuple(probe_input(args[0]).shape)} "
                       f"input: {type(error).__name__}: {error}{hint}")  # fmt: skip
            return None
        if tuple(out.shape) != expected:
            halved = args[2] != 1 and tuple(out.shape[2:]) == (SIDE, SIDE)
            why = "; the image is not halved: stride 2 goes on the first 3x3 conv" if halved else ""
            if expansion > 1 and out.shape[1] == args[1]:
                why = f"; the last 1x1 conv widens the channels to {expansion} x channels"
            report.add("shape", False, f"{_name(args, type(block).__name__)} gives {tuple(out.shape)} for a "
                       f"{tuple(probe_input(args[0]).shape)} input, expected {expected}{why}")  # fmt: skip
            return None
    report.add("shape", True, "both blocks give the expected output shapes")
    return orders


def check_biases(blocks: dict[tuple, nn.Module], report: Report) -> None:
    """No conv of the last (projecting) block has a bias: BatchNorm follows each."""
    biased = [
        f"{m.in_channels}->{m.out_channels} {m.kernel_size[0]}x{m.kernel_size[0]}"
        for m in list(blocks.values())[-1].modules()
        if isinstance(m, nn.Conv2d) and m.bias is not None
    ]
    report.add(
        "conv bias",
        not biased,
        f"the conv {', '.join(biased)} has a bias; BatchNorm right after it subtracts any "
        "constant, so the bias is wasted: use bias=False"
        if biased
        else "no conv has a bias (BatchNorm follows each)",
    )


def _convs(orders: dict[tuple, list[nn.Module]], report: Report) -> None:
    threes = convs_of_kind(orders[DOWN], 3)
    if len(threes) != 2:
        report.add("two 3x3 convs", False, f"{len(threes)} 3x3 convs ran; a basic block has two")
        return
    report.add("two 3x3 convs", True, "two 3x3 convs run")
    strides = [conv.stride[0] for conv in threes]
    if strides == [1, 2]:
        message = "the stride is on the second 3x3 conv; put it on the first (as He et al.)"
    elif strides != [2, 1]:
        message = f"the 3x3 convs have strides {strides}; the first needs stride 2, the second 1"
    else:
        message = ""
    report.add("stride", not message, message or "stride 2 is on the first 3x3 conv")


def _shortcut_parts(orders: dict[tuple, list[nn.Module]], report: Report) -> None:
    if convs_of_kind(orders[SAME], 1):
        report.add("identity", False, f"{_name(SAME)} runs a 1x1 conv: a projection where the "
                   "identity fits; when the shapes match the shortcut is x itself")  # fmt: skip
    else:
        report.add("identity", True, "where the shapes match, the shortcut is the identity")
    order = orders[DOWN]
    ones = convs_of_kind(order, 1)
    if len(ones) != 1 or ones[0].stride[0] != 2:
        found = f"{len(ones)} 1x1 conv(s)" + (f" with stride {ones[0].stride[0]}" if ones else "")
        report.add("projection", False, f"{_name(DOWN)} runs {found}; when channels or the "
                   "stride change, the shortcut is one 1x1 conv with stride 2, then BatchNorm")  # fmt: skip
        return
    after = order[order.index(ones[0]) + 1] if order.index(ones[0]) + 1 < len(order) else None
    normalised = isinstance(after, nn.BatchNorm2d) and after.num_features == DOWN[1]
    report.add("projection", normalised, "the projection is a 1x1 conv with stride 2 and "
               "BatchNorm" if normalised else "the projection has no BatchNorm after its 1x1 "
               "conv; add nn.BatchNorm2d(out_channels) after it, as on the main path")  # fmt: skip


def check_relu(blocks: dict[tuple, nn.Module], report: Report, plain: bool = False) -> None:
    """The output is never negative: the last ReLU comes last (after the addition)."""
    lows = {}
    for args, block in blocks.items():
        with torch.no_grad():
            lows[args] = float(block(probe_input(args[0], seed=2)).min())
    low = min(lows.values())
    if plain:
        name, fix, ok = "relu last", "the block must end with a ReLU", "the block ends with a ReLU"
    else:
        name = "relu after the addition"
        fix = "the last ReLU must come after adding the shortcut, not before it"
        ok = "the last ReLU comes after the addition"
    report.add(
        name,
        low >= 0,
        f"the output has negative values (as low as {low:.2f}): {fix}"
        if low < 0
        else f"the output is never negative: {ok}",
    )


def zero_branch(
    block: nn.Module, order: list[nn.Module], branch: Callable[[nn.Module], bool] | None = None
) -> nn.Module:
    """A copy with the `branch` convs (default: the 3x3 ones) zeroed and every BatchNorm right
    after one giving exactly 0: what is left of the output is the shortcut alone."""
    branch = branch or _is_three
    paths = {id(module): name for name, module in block.named_modules()}
    after_three = [
        paths[id(module)]
        for index, module in enumerate(order)
        if isinstance(module, nn.BatchNorm2d) and index and branch(order[index - 1])
    ]
    block = copy.deepcopy(block)
    with torch.no_grad():
        for module in block.modules():
            if branch(module):
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
        for path in after_three:
            bn = block.get_submodule(path)
            bn.running_mean.zero_()
            if bn.affine:
                bn.bias.zero_()
    return block


def _is_three(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3)


def _shortcut_added(
    blocks: dict[tuple, nn.Module], orders: dict[tuple, list[nn.Module]], report: Report
) -> None:
    x = probe_input(SAME[0], seed=3)
    with torch.no_grad():
        out = zero_branch(blocks[SAME], orders[SAME])(x)
        down = zero_branch(blocks[DOWN], orders[DOWN])(probe_input(DOWN[0], seed=3))
    if float(out.abs().max()) < TOLERANCE or float(down.abs().max()) < TOLERANCE:
        report.add("shortcut added", False, "with the 3x3 convs' weights at zero the block "
                   "outputs only zeros: the shortcut is never added to the main path")  # fmt: skip
        return
    # x itself means the shortcut is added but the last ReLU is misplaced, and a projection
    # where the identity fits changes x: their own checks say so
    gap = min(float((out - torch.relu(x)).abs().max()), float((out - x).abs().max()))
    gap = 0.0 if convs_of_kind(orders[SAME], 1) else gap
    report.add(
        "shortcut added",
        gap < TOLERANCE,
        "with the 3x3 convs' weights at zero the block passes relu(x) through: the shortcut is "
        "added"
        if gap < TOLERANCE
        else f"with the 3x3 convs' weights at zero the block should "
        f"output relu(x), but differs from it by up to {gap:.3f}: add x itself, unchanged",
    )


def _reference_twin(block: nn.Module, order: list[nn.Module], residual: bool = True) -> nn.Module:
    """The reference block holding the student's weights (see `load_into_reference`)."""
    reference = BasicBlock(DOWN[0], DOWN[1], DOWN[2], residual=residual)
    return load_into_reference(reference, order)


def load_into_reference(reference: BasicBlock, order: list[nn.Module]) -> nn.Module:
    """`reference` holding the weights of the student's modules that ran in `order`
    (paired by `reference_pairs`)."""
    for module, target in reference_pairs(reference, order):
        target.load_state_dict(module.state_dict())
    return reference.eval()


def reference_pairs(
    reference: BasicBlock, order: list[nn.Module]
) -> list[tuple[nn.Module, nn.Module]]:
    """Each of the student's modules that ran in `order` with its part of `reference`: 3x3
    convs in the order they ran, each BatchNorm after its conv, the 1x1 conv and its
    BatchNorm as the projection. A part the reference lacks is left out (its own check says so)."""
    projection = list(reference.downsample) if reference.downsample is not None else [None, None]
    slots = iter([reference.conv1, reference.conv2])
    norms = {id(reference.conv1): reference.bn1, id(reference.conv2): reference.bn2}
    convs: dict[int, nn.Module | None] = {}
    pairs = []
    for index, module in enumerate(order):
        if isinstance(module, nn.Conv2d):
            target = next(slots, None) if _is_three(module) else projection[0]
            convs[id(module)] = target
        elif index:
            conv = convs.get(id(order[index - 1]))
            target = norms.get(id(conv), projection[1]) if conv is not None else None
        else:
            target = None
        if target is not None:
            pairs.append((module, target))
    return pairs


def _matches_reference(
    blocks: dict[tuple, nn.Module],
    orders: dict[tuple, list[nn.Module]],
    report: Report,
    residual: bool = True,
) -> None:
    reference = _reference_twin(blocks[DOWN], orders[DOWN], residual)
    x = probe_input(DOWN[0], seed=4)
    with torch.no_grad():
        gap = float((blocks[DOWN](x) - reference(x)).abs().max())
    report.add(
        "same as the reference",
        gap < TOLERANCE,
        "with the same weights it computes what the reference block computes"
        if gap < TOLERANCE
        else f"with the same weights its output differs from the reference block's by up to "
        f"{gap:.3f}: check the order conv -> BN -> ReLU -> conv -> BN"
        + (", add the shortcut, ReLU" if residual else ", ReLU"),
    )


Blocks = dict[tuple, nn.Module]
Orders = dict[tuple, list[nn.Module]]


def _main_path(cls: type, report: Report) -> tuple[Blocks, Orders] | None:
    """The checks every block shares (it builds, runs, has the right shapes, two 3x3 convs
    without bias, the stride on the first); None when the block cannot be probed further."""
    blocks = build_blocks(cls, report)
    orders = check_shapes(blocks, report) if blocks else None
    if blocks is None or orders is None:
        return None
    check_biases(blocks, report)
    _convs(orders, report)
    return blocks, orders


def check_residual_block(cls: type) -> Report:
    """Every check of the `residual_block` exercise on the student's class."""
    report = Report("residual_block")
    probed = _main_path(cls, report)
    if probed is None:
        return report
    blocks, orders = probed
    _shortcut_parts(orders, report)
    check_relu(blocks, report)
    _shortcut_added(blocks, orders, report)
    if report.passed:  # the last word, once every part is where it belongs
        _matches_reference(blocks, orders, report)
    return report


def _no_shortcut(
    blocks: dict[tuple, nn.Module], orders: dict[tuple, list[nn.Module]], report: Report
) -> None:
    ones = sum(len(convs_of_kind(order, 1)) for order in orders.values())
    with torch.no_grad():
        left = max(
            float(zero_branch(blocks[args], orders[args])(probe_input(args[0], seed=3)).abs().max())
            for args in blocks
        )
    if ones or left > TOLERANCE:
        found = (
            f"runs {ones} 1x1 conv(s), a shortcut"
            if ones
            else f"still outputs up to {left:.3f} with its 3x3 convs at zero"
        )
        report.add("no shortcut", False, f"the block {found}: a plain block adds nothing to its "
                   "main path; leave the shortcut out")  # fmt: skip

    else:
        report.add("no shortcut", True, "with its 3x3 convs at zero it outputs zeros: no shortcut")


def check_plain_block(cls: type) -> Report:
    """Every check of the `plain_block` exercise: the residual block without its shortcut."""
    report = Report("plain_block")
    probed = _main_path(cls, report)
    if probed is None:
        return report
    blocks, orders = probed
    _no_shortcut(blocks, orders, report)
    check_relu(blocks, report, plain=True)
    if report.passed:
        _matches_reference(blocks, orders, report, residual=False)
    return report
