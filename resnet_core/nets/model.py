"""ResNets built from an ArchSpec, with torchvision's module names.

Blocks follow torchvision's `models/resnet.py` (conv1/bn1/conv2/bn2/downsample, the stride
on the bottleneck's 3x3 conv) so that an `-imagenet` preset loads torchvision's state dict
with strict=True. Shortcuts: option A (zero padding) and option B (projection) from
He et al. 2016, https://arxiv.org/abs/1512.03385, section 3.3.

Two plain conv stacks sit beside them as baselines: `SmallCNN`, and `SimpleCNN`, the
course's seed-notebook net (391,946 parameters), whose state dict reads block1.conv.weight,
block1.bn.weight, ..., fc.weight.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.nets.block_kinds import block_kind
from resnet_core.nets.size import check_buildable
from resnet_core.nets.spec import ArchSpec, resolve_spec

__all__ = [
    "ResidualBlock",
    "BasicBlock",
    "Bottleneck",
    "ZeroPadShortcut",
    "ResNet",
    "SimpleCNN",
    "SmallCNN",
    "build_model",
    "conv3x3",
    "conv1x1",
]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding; no bias because BatchNorm follows."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution; no bias because BatchNorm follows."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by striding and pad the new channels with zeros (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (N, C, H/s, W/s)
        extra = self.out_channels - self.in_channels
        if extra:
            # Pad channels (dim 1) symmetrically-ish: F.pad pads the last dims first.
            x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))  # (N, C_out, H, W)
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def make_shortcut(
    kind: str, in_channels: int, out_channels: int, stride: int, norm: bool = True
) -> nn.Module | None:
    """The shortcut a block needs: None for identity, else projection (a 1x1 conv, then
    BatchNorm unless `norm` is off, as in pre-activation blocks) or zero padding."""
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "zero_pad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if not norm:
        return nn.Sequential(conv1x1(in_channels, out_channels, stride))
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class ResidualBlock(nn.Module):
    """What every block shares: its arguments, the optional skip connection and the final add.

    Subclasses build their main path in `_build_main_path`; the shortcut is added after it so
    that `downsample` follows the main path in registration (and so forward) order.
    """

    expansion = 1
    shortcut_norm = True  # BatchNorm after a projection (pre-activation blocks have none)
    # Set on an instance by a measurement (`resnet_core.analysis.mechanisms`), None otherwise:
    # `route` "branch" or "skip" lets the gradient through that summand only (the forward is
    # unchanged); `probe(block, branch, skip)` reads the two summands before they are added.
    route: str | None = None
    probe: Callable[..., None] | None = None
    # Set on an instance by a lesion (`resnet_core.analysis.lesion`): the addition returns the
    # skip alone, so the block is deleted the way its own forward adds (after it, a ReLU where
    # the kind has one; a pre-activation or Fixup block's skip as that kind computes it).
    dropped: bool = False

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        residual: bool = True,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self._build_main_path(in_channels, width, out_channels, stride)
        self.residual = residual
        self.stride = stride
        self.shortcut_kind = shortcut if residual else "none"
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, self.shortcut_norm)
            if residual
            else None
        )

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        raise NotImplementedError

    def _join(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """out + shortcut(x) for residual blocks (not in place: probes read BN outputs), then ReLU."""
        if self.residual:
            out = self._add(out, x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def _add(self, branch: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """branch + skip, as `route` and `probe` ask (every block adds through here)."""
        if self.probe is not None:
            self.probe(self, branch, skip)
        if self.dropped:
            return skip
        if self.route == "branch":
            skip = skip.detach()
        elif self.route == "skip":
            branch = branch.detach()
        return branch + skip


class BasicBlock(ResidualBlock):
    """Two 3x3 conv-BN stanzas; with `residual`, the input is added back before the last ReLU."""

    expansion = 1

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(width, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self._join(out, x)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (carries the stride, as torchvision's v1.5), 1x1 expand by 4."""

    expansion = 4

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self._join(out, x)


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (He et al. 2015), BN scale 1 / shift 0, as torchvision does."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ResNet(nn.Module):
    """A residual (or plain) network described by an ArchSpec.

    Module names match torchvision: conv1, bn1, relu, maxpool, layer1..layerK, avgpool, fc.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        stem_channels = spec.stem_channels()
        if spec.stem == "imagenet":
            self.conv1 = nn.Conv2d(spec.in_channels, stem_channels, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(spec.in_channels, stem_channels)
            self.maxpool = nn.Identity()
        kind = block_kind(spec.block)
        preact = kind.preactivation  # the first block normalises the stem's output itself
        bare = preact or not kind.normalised
        self.bn1 = nn.Identity() if bare else nn.BatchNorm2d(stem_channels)
        self.relu = nn.Identity() if preact else nn.ReLU()
        block = kind.module_class()
        in_channels = stem_channels
        self.stage_names: list[str] = []
        for index, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
            stride = 1 if index == 0 else 2
            blocks = []
            for position in range(depth):
                blocks.append(
                    block(
                        in_channels,
                        width,
                        stride if position == 0 else 1,
                        spec.residual,
                        spec.shortcut,
                    )
                )
                in_channels = width * block.expansion
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        if preact:  # the last block adds with nothing after: normalise before the pool
            self.final_norm = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, spec.num_classes)
        _init_weights(self)
        kind.finish_net(self)  # e.g. Fixup's rescaled initialisation
        if spec.zero_init:  # each residual branch starts at 0: the block is the identity
            for stage in self.stages():
                for block_module in stage:
                    nn.init.zeros_(getattr(block_module, kind.last_norm).weight)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, C0, H', W')
        for stage in self.stages():
            x = stage(x)  # each later stage halves H, W
        if hasattr(self, "final_norm"):
            x = self.final_norm(x)
        x = torch.flatten(self.avgpool(x), 1)  # (N, C_last)
        return self.fc(x)  # (N, num_classes)


class ConvBNReLU(nn.Sequential):
    """conv3x3 -> BN -> ReLU, the unit of the small CNN baseline."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU()
        )


class ConvUnit(nn.Sequential):
    """conv3x3 with a bias -> BN -> ReLU, children named conv, bn, relu: the seed notebook's
    layer (its convs keep PyTorch's default bias, redundant before BatchNorm but counted in
    its 391,946 parameters)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, 3, padding=1),
                bn=nn.BatchNorm2d(out_channels),
                relu=nn.ReLU(),
            )
        )


CONV_UNITS = (ConvBNReLU, ConvUnit)  # the layers of the conv stacks, one "block" each


class SmallCNN(nn.Module):
    """The small baseline: per stage, `depth` conv-BN-ReLU layers then a 2x2 max-pool."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        in_channels = spec.in_channels
        for depth, width in zip(spec.depths, spec.widths):
            for _ in range(depth):
                layers.append(ConvBNReLU(in_channels, width))
                in_channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, spec.num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.fc(torch.flatten(x, 1))


class SimpleCNN(nn.Module):
    """The seed notebook's SimpleCNN: conv-BN-ReLU layers with a 2x2 max-pool after every
    stage but the last, global average pooling and one linear layer.

    The preset `simple_cnn` (depths 1, 1, 1, 1; widths 32, 64, 128, 256) is the notebook's
    net layer for layer. Modules are named block1..blockN (each conv, bn, relu) and
    pool1..poolK, so the state dict is as readable as the notebook's. Weights keep PyTorch's
    default initialisation, as the notebook's nn.Conv2d and nn.Linear do.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layer_names: list[str] = []  # blocks and pools, in forward order
        in_channels, blocks = spec.in_channels, 0
        for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
            for _ in range(depth):
                blocks += 1
                self._add(f"block{blocks}", ConvUnit(in_channels, width))
                in_channels = width
            if stage < len(spec.depths) - 1:
                self._add(f"pool{stage + 1}", nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, spec.num_classes)

    def _add(self, name: str, module: nn.Module) -> None:
        self.add_module(name, module)
        self.layer_names.append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.layer_names:
            x = getattr(self, name)(x)  # blocks keep H, W; pools halve them: (N, 256, 4, 4)
        x = torch.flatten(self.avgpool(x), 1)  # (N, C_last)
        return self.fc(x)  # (N, num_classes)


_CNN_TYPES: dict[str, type[nn.Module]] = {"small_cnn": SmallCNN, "seed_cnn": SimpleCNN}


def build_model(name_or_spec: str | ArchSpec | dict, **overrides: Any) -> nn.Module:
    """Build a network from a preset name, a spec dict or an ArchSpec.

    Args:
        name_or_spec: e.g. "resnet20", "resnet50-imagenet", or an ArchSpec.
        **overrides: spec fields to change, e.g. num_classes=7 or residual=False.

    Returns:
        The model on the CPU in training mode, Kaiming-initialised; `model.spec` holds its spec.

    Raises:
        SpecError: unknown preset, unknown override or invalid field value.
    """
    spec = resolve_spec(name_or_spec, **overrides)
    check_buildable(spec)  # whatever the spec came from: refused before a weight is allocated
    return _CNN_TYPES.get(spec.family, ResNet)(spec)


def model_spec(model: nn.Module) -> ArchSpec | None:
    """The ArchSpec a model was built from, if it was built here."""
    spec = getattr(model, "spec", None)
    return spec if isinstance(spec, ArchSpec) else None
