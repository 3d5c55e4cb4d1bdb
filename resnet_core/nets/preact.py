"""Pre-activation blocks (He et al. 2016, "Identity Mappings in Deep Residual Networks",
https://arxiv.org/abs/1603.05027): BatchNorm and ReLU come before each conv, and nothing
follows the addition, so the skip path is an identity from the first block to the last.

As in the paper (and timm's `resnetv2`), a projection shortcut reads the block's activated
input, BN-ReLU(x), and has no BatchNorm of its own; an identity shortcut carries x itself.
A net of these blocks has a bare conv for its stem and a final BN-ReLU before the pool
(`BlockKind.preactivation`, which `resnet_core.nets.model.ResNet` reads). Registered in
`resnet_core.nets.block_kinds` as "preact" and "preact_bottleneck".
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_core.nets.model import ResidualBlock, conv1x1, conv3x3

__all__ = ["PreActBlock", "PreActBottleneck"]


class _PreAct(ResidualBlock):
    """What both pre-activation blocks share: BN-ReLU of the input first, the projection
    reading it, the branch added with nothing after."""

    shortcut_norm = False

    def _branch(self, activated: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        out = self._branch(activated)
        if not self.residual:
            return out
        return self._add(out, x if self.downsample is None else self.downsample(activated))


class PreActBlock(_PreAct):
    """BN-ReLU-conv3x3 (carries the stride), BN-ReLU-conv3x3."""

    expansion = 1

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, out_channels)

    def _branch(self, activated: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn2(self.conv1(activated))))


class PreActBottleneck(_PreAct):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (carries the stride), BN-ReLU-conv1x1 (x4 width)."""

    expansion = 4

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv1 = conv1x1(in_channels, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)

    def _branch(self, activated: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.bn2(self.conv1(activated))))
        return self.conv3(self.relu(self.bn3(out)))
