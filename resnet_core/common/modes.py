"""Context managers that measure a model without changing it: train/eval mode and BatchNorm
running statistics are put back as they were."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def model_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Set train (True) or eval (False) mode for the block, then restore the previous one."""
    was_training = model.training
    model.train(train)
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block, then put every BatchNorm running statistic back: a probe in train mode
    must not move the statistics of a (possibly trained) model."""
    saved = {
        key: value.clone()
        for key, value in model.state_dict().items()
        if "running" in key or "num_batches" in key
    }
    try:
        yield model
    finally:
        model.load_state_dict(saved, strict=False)
