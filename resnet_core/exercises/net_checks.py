"""Checks of a student's `SimpleResNet(n_blocks=3)`: the 6n+2 CIFAR net of He et al. (2016,
section 4.2) built from the student's own `ResidualBlock` in the same file.

The block is checked first, with its own checks. Then nets with two values of `n_blocks` are
built and run on a batch of 32x32 images while forward hooks watch every call of the
student's block (its input and output shapes) and every layer outside the blocks (the stem
and the head). The blocks are grouped into stages by their output channels, which tells a
wrong number of blocks, a stage that does not halve the image and wrong widths apart. Last,
the student's weights are copied into the reference net (`resnet_core.nets.model.ResNet`),
which must compute the same output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from resnet_core.exercises.block_checks import (
    check_residual_block,
    reference_pairs,
    settle,
    traced,
)
from resnet_core.exercises.report import Report
from resnet_core.nets.model import ResNet, build_model
from resnet_core.nets.spec import ArchSpec

__all__ = [
    "check_simple_resnet",
    "reference_pairs_of_net",
    "student_spec",
    "watched_run",
    "student_block",
    "BLOCK_CLASS",
    "COUNTS",
]

BLOCK_CLASS = "ResidualBlock"
COUNTS = (3, 2)  # two values of n_blocks, so that a count written in as a number shows
WIDTHS = (16, 32, 64)
SIDES = (32, 16, 8)
TOLERANCE = 1e-3  # relative to the largest output: twenty layers add rounding


@dataclass
class _Run:
    """What one forward pass showed: the output, each call of the student's block (block,
    input, output) and the layers run outside the blocks, split at the first block call."""

    out: torch.Tensor
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    stem: list[nn.Module] = field(default_factory=list)
    head: list[nn.Module] = field(default_factory=list)


def student_block(cls: type) -> type | None:
    """The `ResidualBlock` class defined beside the student's net (in its file or notebook)."""
    found = getattr(cls.__init__, "__globals__", {}).get(BLOCK_CLASS)
    return found if isinstance(found, type) and issubclass(found, nn.Module) else None


def _images(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def watched_run(net: nn.Module, block_cls: type, x: torch.Tensor) -> _Run:
    blocks = [m for m in net.modules() if isinstance(m, block_cls)]
    inside = {id(m) for block in blocks for m in block.modules()}
    layers = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    outside = [m for m in net.modules() if isinstance(m, layers) and id(m) not in inside]
    calls: list = []
    order: list = []
    hooks = [b.register_forward_hook(lambda m, i, o: calls.append((m, i[0], o))) for b in blocks]
    hooks += [m.register_forward_hook(lambda m, _i, _o: order.append((m, len(calls)))) for m in outside]  # fmt: skip
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        for hook in hooks:
            hook.remove()
    run = _Run(out, calls)
    run.stem = [m for m, seen in order if seen == 0]
    run.head = [m for m, seen in order if calls and seen == len(calls)]
    return run


def _runs(cls: type, block_cls: type, report: Report) -> dict[int, _Run] | None:
    runs = {}
    for n in COUNTS:
        try:
            net = settle(cls(n_blocks=n), seed=1)
            runs[n] = watched_run(net, block_cls, _images())
        except Exception as error:  # noqa: BLE001 - the student's code: any error is a finding
            report.add("runs", False, f"SimpleResNet(n_blocks={n}) on a (2, 3, 32, 32) batch "
                       f"raised {type(error).__name__}: {error}"[:400])  # fmt: skip
            return None
        if tuple(runs[n].out.shape) != (2, 10):
            report.add("output", False, f"SimpleResNet(n_blocks={n}) gives "
                       f"{tuple(runs[n].out.shape)} for a (2, 3, 32, 32) batch, expected (2, 10): "
                       "average-pool the 64 channels to 1x1, flatten, then nn.Linear(64, 10)")  # fmt: skip
            return None
    report.add("runs", True, "SimpleResNet(n_blocks=3) and (n_blocks=2) give (2, 10) logits")
    return runs


def _stem(run: _Run, report: Report) -> None:
    first = run.stem[0] if run.stem else None
    want = "a 3x3 conv from 3 to 16 channels (stride 1, no bias), BatchNorm, ReLU"
    if not isinstance(first, nn.Conv2d):
        report.add("stem", False, f"no conv runs before the first block; the net starts with {want}")  # fmt: skip
        return
    seen = f"{first.in_channels}->{first.out_channels} {first.kernel_size[0]}x{first.kernel_size[0]} conv with stride {first.stride[0]}"  # fmt: skip
    normed = len(run.stem) > 1 and isinstance(run.stem[1], nn.BatchNorm2d)
    shape = (first.in_channels, first.out_channels, first.kernel_size[0], first.stride[0])
    if shape != (3, 16, 3, 1) or not normed or first.bias is not None:
        extra = "" if normed else " and no BatchNorm after it"
        extra += " and a bias" if first.bias is not None else ""
        report.add("stem", False, f"the stem is a {seen}{extra}; it should be {want}")
        return
    low = float(run.calls[0][1].min())
    report.add("stem", low >= 0, f"the first block gets negative inputs (as low as {low:.2f}): "
               "a ReLU belongs after the stem's BatchNorm" if low < 0 else f"the stem is {want}")  # fmt: skip


def _stages(run: _Run) -> list[list[tuple[int, int, int]]]:
    """The block calls grouped into stages by output channels: (channels, in side, out side)."""
    stages: list[list[tuple[int, int, int]]] = []
    for _block, x, out in run.calls:
        call = (out.shape[1], x.shape[-1], out.shape[-1])
        if stages and stages[-1][-1][0] == call[0]:
            stages[-1].append(call)
        else:
            stages.append([call])
    return stages


def _counts(runs: dict[int, _Run], report: Report) -> bool:
    for n, run in runs.items():
        stages = _stages(run)
        widths = tuple(stage[0][0] for stage in stages)
        if widths != WIDTHS:
            report.add("stage widths", False, f"the blocks' outputs have {list(widths)} channels, "
                       "stage by stage; the three stages have 16, 32 and 64")  # fmt: skip
            return False
        counts = [len(stage) for stage in stages]
        if counts != [n] * 3:
            hint = (
                f" (with n_blocks={COUNTS[0]} it looked right: is a number written where "
                "n_blocks belongs?)"
                if n != COUNTS[0]
                else ""
            )
            report.add("blocks per stage", False, f"SimpleResNet(n_blocks={n}) has {counts} "
                       f"blocks in its three stages; each stage has n_blocks = {n}{hint}")  # fmt: skip
            return False
    report.add("blocks per stage", True, "each of the 16/32/64-channel stages has n_blocks blocks")
    return True


def _halving(run: _Run, report: Report) -> None:
    for number, (stage, side) in enumerate(zip(_stages(run), SIDES), 1):
        for position, (_channels, came, went) in enumerate(stage, 1):
            expected = side if position > 1 or number == 1 else side * 2
            if came == expected and went == side:
                continue
            where = f"block {position} of stage {number} ({stage[0][0]} channels)"
            if went == came and position == 1 and number > 1:
                why = f"keeps the image at {went}x{went}: the first block of stages 2 and 3 needs stride 2 to halve it"  # fmt: skip
            elif went < came:
                why = f"halves the image ({came}x{came} to {went}x{went}); only the first block of stages 2 and 3 does"  # fmt: skip
            else:
                why = f"works at {went}x{went}; this stage works at {side}x{side}"
            report.add("stage halves the image", False, f"{where} {why}")
            return
    report.add("stage halves the image", True, "stages 2 and 3 each halve the image (32, 16, 8)")


def _head(run: _Run, report: Report) -> None:
    linears = [m for m in run.head if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    report.add("head", shapes == [(64, 10)], "after the last block: average pool, then "
               "nn.Linear(64, 10)" if shapes == [(64, 10)] else f"after the last block the "
               f"linear layers are {shapes}; the head is one nn.Linear(64, 10) after the pool")  # fmt: skip


def reference_pairs_of_net(run: _Run, reference: ResNet) -> list[tuple[nn.Module, nn.Module]]:
    """Each of the student's layers seen in `run` with its part of the reference net: the
    stem's conv and BatchNorm, each block's parts (`reference_pairs`), the head's linear."""
    pairs = list(zip(run.stem[:2], (reference.conv1, reference.bn1)))
    blocks = [block for stage in reference.stages() for block in stage]
    for target, (block, x, _out) in zip(blocks, run.calls):
        pairs += reference_pairs(target, traced(block, x)[1])
    pairs += [(m, reference.fc) for m in run.head if isinstance(m, nn.Linear)][:1]
    return pairs


def student_spec(n_blocks: int) -> ArchSpec:
    """The reference net a `SimpleResNet(n_blocks)` computes: ResNet-(6n+2), projections."""
    return ArchSpec("cifar", "basic", (n_blocks,) * 3, WIDTHS, shortcut="projection")


def _reference_net(n: int, run: _Run) -> nn.Module:
    reference = build_model(student_spec(n))
    for module, target in reference_pairs_of_net(run, reference):
        target.load_state_dict(module.state_dict())
    return reference.eval()


def _matches_reference(runs: dict[int, _Run], report: Report) -> None:
    n = COUNTS[0]
    expected = _reference_net(n, runs[n])
    with torch.no_grad():
        reference_out = expected(_images())
    scale = max(1.0, float(reference_out.abs().max()))
    gap = float((runs[n].out - reference_out).abs().max()) / scale
    report.add("same as the reference", gap < TOLERANCE, "with the same weights it computes "
               "what the reference ResNet-20 computes" if gap < TOLERANCE else f"with the same "
               f"weights its output differs from the reference ResNet-20's by {gap:.3f} of its "
               "size: check the order stem -> stages -> average pool -> flatten -> linear")  # fmt: skip


def check_simple_resnet(cls: type) -> Report:
    """Every check of the `simple_resnet` exercise: the student's block passes its own checks,
    then the net is built from it with the right stem, stages and head."""
    report = Report("simple_resnet")
    block_cls = student_block(cls)
    if block_cls is None:
        report.add(BLOCK_CLASS, False, f"no class {BLOCK_CLASS} beside SimpleResNet: write "
                   "the block (exercise residual_block) in the same file, then build from it")  # fmt: skip
        return report
    block_report = check_residual_block(block_cls)
    if not block_report.passed:
        first = block_report.failures[0]
        report.add(BLOCK_CLASS, False, f"fix the block first ({first.check}: {first.message})")
        return report
    report.add(BLOCK_CLASS, True, "ResidualBlock passes its own checks")
    runs = _runs(cls, block_cls, report)
    if runs is None:
        return report
    run = runs[COUNTS[0]]
    if not run.calls:
        report.add("built from blocks", False, "SimpleResNet never calls a ResidualBlock: "
                   "build its stages from your own blocks (e.g. an nn.Sequential of them)")  # fmt: skip
        return report
    _stem(run, report)
    if _counts(runs, report):
        _halving(run, report)
    _head(run, report)
    if report.passed:
        _matches_reference(runs, report)
    return report
