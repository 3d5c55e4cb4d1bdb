"""Checks of a student's `Bottleneck(in_channels, channels, stride=1)`: 1x1 conv down to
`channels`, 3x3 conv (carrying the stride, as torchvision's ResNet v1.5), 1x1 conv up to
`4 * channels`, each followed by BatchNorm; the shortcut and the last ReLU as in the basic
block. Judged by what it computes, with the probes of `block_checks`: two blocks are built,
one where the identity fits (64 -> 4 x 16, stride 1) and one that needs a projection
(64 -> 4 x 32, stride 2); forward hooks see which convolutions run in which order, with which
widths and strides; zeroing the last 1x1 conv leaves only the shortcut; the student's weights
copied into the reference (`resnet_core.nets.model.Bottleneck`) must give the same output.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_core.exercises.block_checks import (
    TOLERANCE,
    build_blocks,
    check_biases,
    check_relu,
    check_shapes,
    probe_input,
    zero_branch,
)
from resnet_core.exercises.report import Report
from resnet_core.nets.model import Bottleneck

__all__ = ["check_bottleneck", "FITS", "PROJECTS", "EXPANSION"]

EXPANSION = 4
FITS = (64, 16, 1)  # (in_channels, channels, stride): 64 in, 4 x 16 = 64 out: the identity fits
PROJECTS = (64, 32, 2)  # 64 in, 128 out, the image halves: a projection is needed


def _name(args: tuple[int, int, int]) -> str:
    return f"Bottleneck({args[0]}, {args[1]}, stride={args[2]})"


def _is_projection(conv: nn.Module, args: tuple[int, int, int]) -> bool:
    """A 1x1 conv from the block's input straight to its output width: the shortcut's."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (1, 1)
        and conv.in_channels == args[0]
        and conv.out_channels == EXPANSION * args[1]
    )


def _main(order: list[nn.Module], args: tuple[int, int, int]) -> list[nn.Conv2d]:
    return [m for m in order if isinstance(m, nn.Conv2d) and not _is_projection(m, args)]


def _is_expand(conv: nn.Module, channels: int) -> bool:
    """The main path's last conv: 1x1 from `channels` up (zeroed, only the shortcut is left)."""
    return (
        isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.in_channels == channels
    )


def _main_path(orders: dict[tuple, list[nn.Module]], report: Report) -> bool:
    convs = _main(orders[PROJECTS], PROJECTS)
    kernels = [conv.kernel_size[0] for conv in convs]
    if kernels != [1, 3, 1]:
        report.add("1x1, 3x3, 1x1", False, f"the main path runs {kernels} convs, in that order; "
                   "a bottleneck runs a 1x1 conv down to `channels`, a 3x3, a 1x1 up to 4 x "
                   "channels")  # fmt: skip
        return False
    widths = [(conv.in_channels, conv.out_channels) for conv in convs]
    want = [(64, 32), (32, 32), (32, 128)]
    report.add("1x1, 3x3, 1x1", widths == want, f"{_name(PROJECTS)} runs 1x1, 3x3 and 1x1 convs "
               f"of {widths} channels (in, out), as it should" if widths == want else f"the "
               f"convs of {_name(PROJECTS)} map {widths} channels (in, out); they should map "
               f"{want}: down to `channels`, keep it in the 3x3, then up to 4 x channels")  # fmt: skip
    strides = [conv.stride[0] for conv in convs]
    if strides == [1, 2, 1]:
        message = ""
    elif strides == [2, 1, 1]:
        message = ("the stride is on the first 1x1 conv, which then skips 3 of every 4 pixels "
                   "unseen; put it on the 3x3 conv (torchvision's ResNet v1.5, the reference)")  # fmt: skip
    else:
        message = f"the convs have strides {strides}; only the 3x3 conv has stride 2"
    report.add("stride", not message, message or "stride 2 is on the 3x3 conv")
    return True


def _shortcut_parts(orders: dict[tuple, list[nn.Module]], report: Report) -> None:
    if any(_is_projection(m, FITS) for m in orders[FITS]):
        report.add("identity", False, f"{_name(FITS)} runs a 1x1 conv from 64 to 64 channels: a "
                   "projection where the identity fits; when the shapes match the shortcut is "
                   "x itself")  # fmt: skip
    else:
        report.add("identity", True, "where the shapes match, the shortcut is the identity")
    order = orders[PROJECTS]
    found = [m for m in order if _is_projection(m, PROJECTS)]
    if len(found) != 1 or found[0].stride[0] != 2:
        report.add("projection", False, f"{_name(PROJECTS)} runs {len(found)} 1x1 conv(s) from 64 "
                   "to 128 channels with stride 2; the shortcut needs one, then BatchNorm")  # fmt: skip
        return
    at = order.index(found[0]) + 1
    normed = at < len(order) and isinstance(order[at], nn.BatchNorm2d)
    report.add("projection", normed, "the projection is a 1x1 conv with stride 2 and BatchNorm"
               if normed else "the projection has no BatchNorm after its 1x1 conv; add "
               "nn.BatchNorm2d(4 * channels) after it")  # fmt: skip


def _reference(block: nn.Module, order: list[nn.Module]) -> nn.Module:
    """The reference bottleneck holding the student's weights: main-path convs in the order
    they ran, the projection as the shortcut, each BatchNorm after its conv."""
    reference = Bottleneck(PROJECTS[0], PROJECTS[1], PROJECTS[2])
    slots = iter([(reference.conv1, reference.bn1), (reference.conv2, reference.bn2),
                  (reference.conv3, reference.bn3)])  # fmt: skip
    norm = None
    for module in order:
        if isinstance(module, nn.Conv2d):
            pair = tuple(reference.downsample) if _is_projection(module, PROJECTS) else next(slots)
            pair[0].load_state_dict(module.state_dict())
            norm = pair[1]
        elif norm is not None:
            norm.load_state_dict(module.state_dict())
            norm = None
    return reference.eval()


def _matches_reference(block: nn.Module, order: list[nn.Module], report: Report) -> None:
    reference = _reference(block, order)
    x = probe_input(PROJECTS[0], seed=4)
    with torch.no_grad():
        gap = float((block(x) - reference(x)).abs().max())
    report.add("same as the reference", gap < TOLERANCE, "with the same weights it computes "
               "what the reference bottleneck computes" if gap < TOLERANCE else f"with the same "
               f"weights its output differs from the reference's by up to {gap:.3f}: check the "
               "order conv -> BN -> ReLU (twice), conv -> BN, add the shortcut, ReLU")  # fmt: skip


def _shortcut_added(
    blocks: dict[tuple, nn.Module], orders: dict[tuple, list[nn.Module]], report: Report
) -> None:
    left = {}
    for args, block in blocks.items():
        x = probe_input(args[0], seed=3)
        with torch.no_grad():
            left[args] = (
                x,
                zero_branch(block, orders[args], lambda m, c=args[1]: _is_expand(m, c))(x),
            )
    if any(float(out.abs().max()) < TOLERANCE for _x, out in left.values()):
        report.add("shortcut added", False, "with the last 1x1 conv's weights at zero the block "
                   "outputs only zeros: the shortcut is never added to the main path")  # fmt: skip
        return
    x, out = left[FITS]
    gap = min(float((out - torch.relu(x)).abs().max()), float((out - x).abs().max()))
    gap = 0.0 if any(_is_projection(m, FITS) for m in orders[FITS]) else gap  # its own check
    report.add("shortcut added", gap < TOLERANCE, "with the last 1x1 conv's weights at zero the "
               "block passes relu(x) through: the shortcut is added" if gap < TOLERANCE else
               "with the last 1x1 conv's weights at zero the block should output relu(x), but "
               f"differs from it by up to {gap:.3f}: add x itself, unchanged")  # fmt: skip


def check_bottleneck(cls: type) -> Report:
    """Every check of the `bottleneck` exercise on the student's class."""
    report = Report("bottleneck")
    blocks = build_blocks(cls, report, cases=(FITS, PROJECTS))
    orders = check_shapes(blocks, report, expansion=EXPANSION) if blocks else None
    if blocks is None or orders is None:
        return report
    check_biases(blocks, report)
    if not _main_path(orders, report):
        return report
    _shortcut_parts(orders, report)
    check_relu(blocks, report)
    _shortcut_added(blocks, orders, report)
    if report.passed:
        _matches_reference(blocks[PROJECTS], orders[PROJECTS], report)
    return report
