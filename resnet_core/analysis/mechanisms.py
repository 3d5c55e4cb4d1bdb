"""Three mechanisms that explain why residual nets train, measured on a net (at init or
trained) in seconds on a CPU.

- `shattered_gradients` (Balduzzi et al. 2017, https://arxiv.org/abs/1702.08591): the gradient
  of the net's features with respect to the input along a line of inputs (one image blended into
  another). In deep plain nets neighbouring gradients are nearly unrelated (white noise); in
  residual nets they stay correlated. Returned: the gradient's correlation between
  neighbouring points of the line, and the gradient along it.
- `path_gradients` (Veit et al. 2016, https://arxiv.org/abs/1605.06431, Fig. 6): a net of n
  blocks is an ensemble of 2^n paths; the gradient reaching the input through paths that
  pass k residual branches is measured by letting the gradient through the branches of k
  sampled blocks and through the skips of the others. Returned per k: the number of paths
  C(n, k), the mean gradient norm of one such path, and their product.
- `branch_variance` (De & Smith 2020, https://arxiv.org/abs/2002.10444): per block, the
  variance of the residual branch's output against that of the skip path it is added to.
  With BatchNorm it falls along depth (each block is pulled toward the identity); without
  it the signal grows block by block; with SkipInit or zero-init the branch starts at 0.

Each works through `ResidualBlock.route` and `ResidualBlock.probe`, which every block's
addition honours; they change which way the gradient flows or read the two summands, never
the forward values. BatchNorm runs on statistics of the measured images themselves, set
before measuring (the stale-statistics artefact the landscape page rules out).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import pandas as pd
import torch
from torch import nn

from resnet_core.nets.model import ResidualBlock

__all__ = ["shattered_gradients", "path_gradients", "branch_variance", "residual_blocks"]


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    """The net's blocks that add a skip to their branch, in the order they run (none in a
    plain net)."""
    return [m for m in model.modules() if isinstance(m, ResidualBlock) and m.residual]


def _calibrated(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """A copy in eval mode whose BatchNorms hold the statistics of `images` (so that each
    image's gradient is its own, and no statistics from elsewhere are stale)."""
    model = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one pass sets the batch's statistics
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


def _line(start: torch.Tensor, end: torch.Tensor, points: int) -> torch.Tensor:
    weights = torch.linspace(0, 1, points).view(-1, 1, 1, 1)
    return (1 - weights) * start + weights * end


def shattered_gradients(
    model: nn.Module, start: torch.Tensor, end: torch.Tensor, points: int = 64, seed: int = 0
) -> dict:
    """Along `points` images from `start` to `end` (each (C, H, W)), the gradient of a fixed
    random projection of the pooled features (what the classifier reads) with respect to
    the input.

    Returns {"correlation": mean Pearson correlation of neighbouring gradients,
    "along": DataFrame (t, gradient at one input pixel, gradient norm)}.
    """
    line = _line(start, end, points)
    net = _calibrated(model, line)
    # The features the classifier reads, not the logits: Fixup starts the classifier at 0,
    # which would make every gradient 0 (for a random classifier the two are alike).
    width = net.fc.in_features
    net.fc = nn.Identity()
    projection = torch.randn(width, generator=torch.Generator().manual_seed(seed))
    inputs = line.clone().requires_grad_(True)
    (net(inputs) @ projection).sum().backward()  # eval mode: each row's gradient is its own
    grads = inputs.grad.flatten(1)
    centred = grads - grads.mean(1, keepdim=True)
    unit = centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)
    neighbours = (unit[:-1] * unit[1:]).sum(1)
    pixel = int(torch.argmax(grads.abs().mean(0)))
    along = pd.DataFrame(
        {
            "t": torch.linspace(0, 1, points).tolist(),
            "gradient": grads[:, pixel].tolist(),
            "norm": grads.norm(dim=1).tolist(),
        }
    )
    return {"correlation": float(neighbours.mean()), "along": along}


@contextlib.contextmanager
def _routed(blocks: list[ResidualBlock], through_branch: set[int]) -> Iterator[None]:
    """The gradient passes the branch of the blocks in `through_branch` and the skip of the
    others (the forward is unchanged)."""
    for index, block in enumerate(blocks):
        block.route = "branch" if index in through_branch else "skip"
    try:
        yield
    finally:
        for block in blocks:
            block.route = None


def path_gradients(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    lengths: list[int] | None = None,
    samples: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Per path length k (default: every third from 0 to n), the input-gradient norm of the
    loss through one path passing k sampled branches, averaged over `samples` samples.

    Columns: k, paths (C(n, k)), gradient (mean norm of one path), total (paths x gradient,
    the share of the whole gradient that paths of length k carry, up to their correlation).
    """
    net = _calibrated(model, images)
    blocks = residual_blocks(net)
    n = len(blocks)
    if n == 0:  # a plain net has one path, through every layer
        return pd.DataFrame(columns=["k", "paths", "gradient", "total"])
    lengths = lengths if lengths is not None else list(range(0, n + 1, 3))
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    rows = []
    for k in lengths:
        norms = []
        for _ in range(samples):
            chosen = set(torch.randperm(n, generator=generator)[:k].tolist())
            inputs = images.clone().requires_grad_(True)
            with _routed(blocks, chosen):
                loss_fn(net(inputs), labels).backward()
            norms.append(float(inputs.grad.norm()))
        gradient = sum(norms) / len(norms)
        paths = math.comb(n, k)
        rows.append({"k": k, "paths": paths, "gradient": gradient, "total": paths * gradient})
    return pd.DataFrame(rows, columns=["k", "paths", "gradient", "total"])


def branch_variance(model: nn.Module, images: torch.Tensor) -> pd.DataFrame:
    """Per block, the variance of the residual branch's output and of the skip it is added
    to, and their ratio, on `images` (BatchNorm on their own statistics).

    Columns: block (1..n), branch, skip, ratio (branch / skip; 0 when the branch is 0).
    """
    net = _calibrated(model, images)
    rows: list[dict] = []

    def record(block: ResidualBlock, branch: torch.Tensor, skip: torch.Tensor) -> None:
        variance = float(skip.var())
        rows.append(
            {
                "block": len(rows) + 1,
                "branch": float(branch.var()),
                "skip": variance,
                "ratio": float(branch.var()) / variance if variance > 0 else float("nan"),
            }
        )

    blocks = residual_blocks(net)
    for block in blocks:
        block.probe = record
    try:
        with torch.no_grad():
            net(images)
    finally:
        for block in blocks:
            block.probe = None
    return pd.DataFrame(rows, columns=["block", "branch", "skip", "ratio"])
