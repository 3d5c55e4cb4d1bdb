"""Residual blocks without normalisation, and the initialisations that let deep residual nets
train without it.

- `NoNormBlock`: the basic block with BatchNorm taken out (its convs get biases instead) and
  the usual He initialisation: a deep residual net of these grows its signal block by block
  and a deep plain one (`residual=False`) degrades, which is what BatchNorm was hiding.
- `SkipInitBlock` (De & Smith 2020, https://arxiv.org/abs/2002.10444): the same, with a
  learnable scalar on the residual branch that starts at 0, so every block starts as the
  identity (what BatchNorm's pull toward the identity does for a normalised net).
- `FixupBlock` (Zhang et al. 2019, https://arxiv.org/abs/1901.09321): scalar biases before
  each conv and activation, a scalar multiplier, the branch's last conv at 0, its first conv
  scaled by L^(-1/2) for L blocks, and the classifier at 0 (`fixup_init`, run on the net).

A net of these blocks has no BatchNorm in its stem either (`BlockKind.normalised`).
Registered in `resnet_core.nets.block_kinds` as "nonorm", "skipinit" and "fixup".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from resnet_core.nets.model import ResidualBlock

__all__ = ["NoNormBlock", "SkipInitBlock", "FixupBlock", "Scalar", "fixup_init"]


class Scalar(nn.Module):
    """One learnable number that multiplies (or, with `add`, is added to) its input: a layer
    of its own, so traces and parameter counts see it."""

    def __init__(self, value: float, add: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(float(value)))
        self.add = add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight if self.add else x * self.weight

    def extra_repr(self) -> str:
        return f"{'add' if self.add else 'multiply'}, {float(self.weight.detach()):g}"


def _conv(in_channels: int, out_channels: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)


class NoNormBlock(ResidualBlock):
    """conv3x3 (carries the stride), ReLU, conv3x3, add, ReLU; biases, no BatchNorm."""

    expansion = 1
    shortcut_norm = False

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        self.conv1 = _conv(in_channels, width, stride)
        self.relu = nn.ReLU()
        self.conv2 = _conv(width, out_channels)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._join(self._branch(x), x)


class SkipInitBlock(NoNormBlock):
    """`NoNormBlock` whose branch is multiplied by `alpha`, a learnable scalar starting at 0."""

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        super()._build_main_path(in_channels, width, out_channels, stride)
        self.alpha = Scalar(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._join(self.alpha(self._branch(x)), x)


class FixupBlock(ResidualBlock):
    """Fixup's basic block: x + b1a -> conv -> + b1b -> ReLU -> + b2a -> conv -> * scale + b2b,
    added to the shortcut of x + b1a, then ReLU; convs without bias, scalars for the rest."""

    expansion = 1
    shortcut_norm = False

    def _build_main_path(
        self, in_channels: int, width: int, out_channels: int, stride: int
    ) -> None:
        self.bias1a, self.bias1b, self.bias2a, self.bias2b = (
            Scalar(0.0, add=True) for _ in range(4)
        )
        self.conv1 = _conv(in_channels, width, stride, bias=False)
        self.relu = nn.ReLU()
        self.conv2 = _conv(width, out_channels, bias=False)
        self.scale = Scalar(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = self.bias1a(x)
        out = self.relu(self.bias1b(self.conv1(shifted)))
        out = self.bias2b(self.scale(self.conv2(self.bias2a(out))))
        if not self.residual:
            return self.relu(out)
        identity = shifted if self.downsample is None else self.downsample(shifted)
        return self.relu(self._add(out, identity))


def fixup_init(model: nn.Module) -> None:
    """Fixup's initialisation of a net of `FixupBlock`s: each branch's first conv He-normal
    scaled by L^(-1/2) (L blocks, two layers per branch), its last conv at 0, the classifier
    at 0."""
    blocks = [m for m in model.modules() if isinstance(m, FixupBlock)]
    for block in blocks:
        conv = block.conv1
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        nn.init.normal_(conv.weight, 0, math.sqrt(2 / fan_out) * len(blocks) ** -0.5)
        nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(model.fc.weight)
    nn.init.zeros_(model.fc.bias)
