"""An exponential moving average of a model's weights (Polyak & Juditsky 1992), which the
trainer evaluates and saves when `TrainConfig.ema` is above 0.

The average is debiased as Adam's moments are (Kingma & Ba 2014,
https://arxiv.org/abs/1412.6980): after step t it is
sum_i (1 - d) d^(t - i) w_i / (1 - d^t) over the weights w_i after each step i, so the
random initial weights carry no share of it. With d = 0.999 a plain average started at
the initial weights would still hold 0.999^1176 = 31 % of them after a 24-epoch run of
1176 steps. Each update is one `torch._foreach_lerp_` over all parameters, towards the
live weights by (1 - d) / (1 - d^t).

BatchNorm's running statistics are not averaged: they are copied from the live model
whenever the average is used (as cifar10-airbench does).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightAverage", "lerp_weight"]


def lerp_weight(decay: float, step: int) -> float:
    """How far step `step` (1-based) moves the debiased average towards the live weights."""
    return (1.0 - decay) / (1.0 - decay**step)


class WeightAverage:
    """The averaged copy of `live` (the trained nn.Module itself, not a compiled or
    data-parallel wrapper); `model` is that copy, an ordinary module in the same memory
    format as `live`."""

    def __init__(self, live: nn.Module, decay: float) -> None:
        self.decay = decay
        self.live = live
        self.model = copy.deepcopy(live).requires_grad_(False).eval()
        self._averaged = list(self.model.parameters())
        self._trained = list(live.parameters())

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the live weights after optimizer step `step` (1-based)."""
        torch._foreach_lerp_(self._averaged, self._trained, lerp_weight(self.decay, step))

    @torch.no_grad()
    def current(self) -> nn.Module:
        """The averaged model, with the live model's BatchNorm statistics copied in."""
        for averaged, live in zip(self.model.buffers(), self.live.buffers(), strict=True):
            averaged.copy_(live)
        return self.model

    def load(self, weights: dict) -> None:
        """Set the average to saved weights (a checkpoint's averaged model)."""
        self.model.load_state_dict(weights)
