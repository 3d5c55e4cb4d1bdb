"""The block kinds a ResNet is built from, in one place.

Each `BlockKind` says what the rest of the package needs to know about a block without
testing its name: the module that builds it, its expansion (output channels per unit of
width), its convolutions in the order they run (kernel, the channels they read and write,
which one carries the stride), so that sizes are estimated from the spec alone and layers
counted, and how the diagram labels it. The spec validates `block` against this registry,
the model builds the registered module, the trace names a block by the kind whose module it
is, and the diagram draws the kind's label. Adding a block kind is one module that defines
the block (a `resnet_core.nets.model.ResidualBlock` subclass) and calls `register_block`,
plus its tests.

No torch here: the spec reads this registry before any net is built; a kind's module is
named as "package.module:Class" and imported when a net is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["Conv", "BlockKind", "BLOCK_KINDS", "register_block", "block_kind"]

ROLES = ("in", "width", "out")  # the channels a conv reads or writes, in a block's terms


@dataclass(frozen=True)
class Conv:
    """One convolution of a block's main path: `kernel` x `kernel`, from the `reads` channels
    to the `writes` channels ("in", "width" or "out"); `strided` carries the block's stride
    (convs before it run at the input's side, it and those after at the output's)."""

    kernel: int
    reads: str
    writes: str
    strided: bool = False


@dataclass(frozen=True)
class BlockKind:
    """A block kind: its `name` in a spec, its `module` ("package.module:Class" or the class),
    `expansion`, main-path `convs` in order, the diagram's `label`, a `description`, whether
    it is a pre-activation block (the net around it changes too) and the sum it computes
    where its shortcut projects."""

    name: str
    module: str | type
    expansion: int
    convs: tuple[Conv, ...]
    label: str
    description: str
    preactivation: bool = False  # BN-ReLU before each conv: bare conv stem, BN-ReLU before the pool
    projection: str = "out + BN(conv1x1(x))"  # what the block adds where it projects
    projection_label: str = "1x1 conv + BN"  # the diagram's words on a projecting skip
    last_norm: str | None = None  # the branch's last BatchNorm (zero_init sets its scale to 0)
    normalised: bool = True  # False: no BatchNorm anywhere, the stem's included
    finish: str | None = None  # "package.module:function" run on the built net (its init)

    def finish_net(self, model: object) -> None:
        """Run the kind's net-level initialisation on a freshly built net, if it has one."""
        if self.finish is not None:
            path, _, name = self.finish.partition(":")
            getattr(importlib.import_module(path), name)(model)

    def __post_init__(self) -> None:
        strided = [conv for conv in self.convs if conv.strided]
        roles = {role for conv in self.convs for role in (conv.reads, conv.writes)}
        if len(strided) != 1 or not roles <= set(ROLES) or self.expansion < 1:
            raise ValueError(f"block kind {self.name!r}: one strided conv, roles {ROLES}, expansion >= 1")  # fmt: skip

    def module_class(self) -> type:
        """The class that builds this block (imported on first use)."""
        if not isinstance(self.module, str):
            return self.module
        path, _, name = self.module.partition(":")
        return getattr(importlib.import_module(path), name)

    def _channels(self, in_channels: int, width: int) -> dict[str, int]:
        return {"in": in_channels, "width": width, "out": width * self.expansion}

    def params(self, in_channels: int, width: int) -> int:
        """Conv weights of the main path of one block."""
        c = self._channels(in_channels, width)
        return sum(conv.kernel**2 * c[conv.reads] * c[conv.writes] for conv in self.convs)

    def mult_adds(self, in_channels: int, width: int, side_in: int, side_out: int) -> int:
        """Multiply-adds of the main path for one image, `side_in` before the stride."""
        c, side, total = self._channels(in_channels, width), side_in, 0
        for conv in self.convs:
            side = side_out if conv.strided else side
            total += conv.kernel**2 * c[conv.reads] * c[conv.writes] * side * side
        return total

    def kept_channels(self, width: int) -> int:
        """Channels of every conv output of one block (what the backward pass keeps)."""
        c = self._channels(width, width)
        return sum(c[conv.writes] for conv in self.convs)


BLOCK_KINDS: dict[str, BlockKind] = {}


def register_block(kind: BlockKind) -> BlockKind:
    """Add a block kind (a name already taken is refused: kinds are never replaced)."""
    if kind.name in BLOCK_KINDS:
        raise ValueError(f"block kind {kind.name!r} is registered already")
    BLOCK_KINDS[kind.name] = kind
    return kind


def block_kind(name: str) -> BlockKind:
    """The registered kind of that name; KeyError naming the kinds there are."""
    if name not in BLOCK_KINDS:
        raise KeyError(f"block {name!r} is not one of {', '.join(BLOCK_KINDS)}")
    return BLOCK_KINDS[name]


register_block(
    BlockKind(
        "basic",
        "resnet_core.nets.model:BasicBlock",
        1,
        (Conv(3, "in", "width", strided=True), Conv(3, "width", "out")),
        "basic block",
        "two 3x3 convs",
        last_norm="bn2",
    )
)
register_block(
    BlockKind(
        "bottleneck",
        "resnet_core.nets.model:Bottleneck",
        4,
        (Conv(1, "in", "width"), Conv(3, "width", "width", strided=True), Conv(1, "width", "out")),
        "bottleneck",
        "1x1, 3x3, 1x1; output is 4x width",
        last_norm="bn3",
    )
)
_PREACT = "out + conv1x1(relu(BN(x)))"
register_block(
    BlockKind(
        "preact",
        "resnet_core.nets.preact:PreActBlock",
        1,
        (Conv(3, "in", "width", strided=True), Conv(3, "width", "out")),
        "pre-activation block",
        "BN-ReLU-conv twice, nothing after the addition (He et al. 2016b)",
        preactivation=True,
        projection=_PREACT,
        projection_label="1x1 conv of BN-ReLU(x)",
    )
)
register_block(
    BlockKind(
        "preact_bottleneck",
        "resnet_core.nets.preact:PreActBottleneck",
        4,
        (Conv(1, "in", "width"), Conv(3, "width", "width", strided=True), Conv(1, "width", "out")),
        "pre-activation bottleneck",
        "BN-ReLU before each of 1x1, 3x3, 1x1; output is 4x width (He et al. 2016b)",
        preactivation=True,
        projection=_PREACT,
        projection_label="1x1 conv of BN-ReLU(x)",
    )
)
_NO_NORM = (Conv(3, "in", "width", strided=True), Conv(3, "width", "out"))
register_block(
    BlockKind(
        "nonorm",
        "resnet_core.nets.nonorm:NoNormBlock",
        1,
        _NO_NORM,
        "block, no BatchNorm",
        "two 3x3 convs with biases, no normalisation, He initialisation",
        projection="out + conv1x1(x)",
        projection_label="1x1 conv",
        normalised=False,
    )
)
register_block(
    BlockKind(
        "skipinit",
        "resnet_core.nets.nonorm:SkipInitBlock",
        1,
        _NO_NORM,
        "SkipInit block",
        "no normalisation; the branch times a scalar that starts at 0 (De & Smith 2020)",
        projection="alpha * out + conv1x1(x)",
        projection_label="1x1 conv",
        normalised=False,
    )
)
register_block(
    BlockKind(
        "fixup",
        "resnet_core.nets.nonorm:FixupBlock",
        1,
        _NO_NORM,
        "Fixup block",
        "no normalisation; scalar biases and multiplier, rescaled init (Zhang et al. 2019)",
        projection="out + conv1x1(x + b)",
        projection_label="1x1 conv",
        normalised=False,
        finish="resnet_core.nets.nonorm:fixup_init",
    )
)
