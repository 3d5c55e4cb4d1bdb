"""The loss around a trained net's weights, along filter-normalised random directions.

Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets"
(https://arxiv.org/abs/1712.09913). A net's loss is plotted at theta + a*d1 (a 1-D slice)
or theta + a*d1 + b*d2 (a 2-D surface) for Gaussian directions d. Raw Gaussian directions
make nets of different weight scale incomparable (BatchNorm makes a net invariant to the
scale of a filter, so a small-weight net looks sharp), so each direction filter is rescaled
to the norm of the weight filter it perturbs (section 4 of the paper). As in the paper,
BatchNorm parameters and biases are not perturbed (their direction is zero).

BatchNorm statistics. A net in eval mode normalises with the running statistics it
gathered at its trained weights. Once the weights move, those statistics are stale: they
no longer match what the moved layers put out, and the loss then measures the mismatch as
much as the landscape (at a = 1 stale statistics inflated ResNet-56's logits 1.4-3.2x while
plain-56's shrank). So by default every point is evaluated with its statistics recomputed
(`bn_inputs`: a few training batches through the moved net in train mode, no gradient);
`bn_inputs=None` keeps the stale ones, to show the artefact.

Everything here takes tensors; loading runs and images is the caller's business.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.common.modes import frozen_bn_stats, model_mode

__all__ = [
    "Direction",
    "perturbed_weights",
    "filter_normalize",
    "random_direction",
    "random_directions",
    "perturbed",
    "recompute_bn_stats",
    "evaluate_loss",
    "loss_slice",
    "loss_surface",
    "coefficients",
    "slice_point",
    "across_directions",
    "surface_roughness",
]

Direction = dict[str, torch.Tensor]  # parameter name -> a tensor shaped like that parameter
PointCallback = Callable[[int, int], None]  # (points done, points in all)
EPSILON = 1e-10  # keeps an all-zero filter from dividing by zero
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
# A grid point counts as a local minimum only below this fraction of the chance loss: a dip
# in a plateau at chance level is no basin a net could be trained into.
MINIMUM_BELOW_CHANCE = 0.5


def perturbed_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights a direction moves: every conv and linear weight (no biases, no BatchNorm)."""
    return {
        f"{name}.weight" if name else "weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rescale each filter (output channel, dim 0) of `direction` to the norm of the same
    filter of `weight`: the step then means the same relative change in every layer."""
    dims = tuple(range(1, direction.dim()))
    direction_norm = torch.linalg.vector_norm(direction, dim=dims, keepdim=True)  # (out, 1, 1, 1)
    weight_norm = torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
    return direction * (weight_norm / (direction_norm + EPSILON))


def random_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """One filter-normalised Gaussian direction, drawn on the CPU (same seed, same direction on
    any device) and placed beside each weight."""
    direction = {}
    for name, weight in perturbed_weights(model).items():
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
        weight_cpu = weight.detach().to("cpu", torch.float32)
        direction[name] = filter_normalize(noise, weight_cpu).to(weight.device, weight.dtype)
    return direction


def random_directions(model: nn.Module, count: int, seed: int) -> list[Direction]:
    """`count` directions from one seeded generator: d1 is the same whether 1 or 2 are drawn,
    so a 1-D slice lies along the surface's first axis."""
    generator = torch.Generator().manual_seed(seed)
    return [random_direction(model, generator) for _ in range(count)]


@contextmanager
def perturbed(
    model: nn.Module, directions: Sequence[Direction], steps: Sequence[float]
) -> Iterator[nn.Module]:
    """Move the weights to theta + sum(step_k * d_k) for the block, then copy the saved
    weights back (copied, not subtracted, so they come back bit for bit)."""
    weights = perturbed_weights(model)
    touched = sorted({name for direction in directions for name in direction})
    saved = {name: weights[name].detach().clone() for name in touched}
    try:
        with torch.no_grad():
            for direction, step in zip(directions, steps, strict=True):
                if step:
                    for name, delta in direction.items():
                        weights[name].add_(delta, alpha=float(step))
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                weights[name].copy_(value)


def recompute_bn_stats(model: nn.Module, inputs: torch.Tensor, batch_size: int = 500) -> None:
    """Replace every BatchNorm's running statistics by those of `inputs` passed through the
    net as it is now (train mode, no gradient; a cumulative average over the batches)."""
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None: an equal-weight average of every batch seen
    try:
        with model_mode(model, train=True), torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                model(inputs[start : start + batch_size])
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum


def evaluate_loss(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int = 500,
    bn_inputs: torch.Tensor | None = None,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on fixed inputs, in eval mode. With `bn_inputs`, the
    BatchNorm statistics are first recomputed on them for this evaluation (and put back
    afterwards); without, the net's running statistics are used as they are."""
    with frozen_bn_stats(model):
        if bn_inputs is not None:
            recompute_bn_stats(model, bn_inputs, batch_size)
        return _scored(model, inputs, targets, batch_size)


def _scored(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    total_loss, correct = 0.0, 0
    with model_mode(model, train=False), torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start : start + batch_size])  # (B, classes)
            labels = targets[start : start + batch_size]
            total_loss += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == labels).sum())
    return total_loss / len(inputs), correct / len(inputs)


def coefficients(points: int, radius: float = 1.0) -> list[float]:
    """`points` evenly spaced steps over [-radius, radius]; an odd count includes 0 exactly."""
    if points < 2:
        raise ValueError(f"points: {points} must be at least 2")
    return [float(x) for x in np.round(np.linspace(-radius, radius, points), 10)]


def loss_slice(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    direction: Direction,
    steps: Sequence[float],
    on_point: PointCallback | None = None,
    batch_size: int = 500,
    bn_inputs: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Loss and accuracy at theta + a*d for each a in `steps`: columns alpha, loss, accuracy.
    `bn_inputs`: recompute BatchNorm statistics on them at every point (None: stale)."""
    rows = []
    for done, alpha in enumerate(steps):
        with perturbed(model, [direction], [alpha]):
            loss, accuracy = evaluate_loss(model, inputs, targets, batch_size, bn_inputs)
        rows.append({"alpha": alpha, "loss": loss, "accuracy": accuracy})
        if on_point:
            on_point(done + 1, len(steps))
    return pd.DataFrame(rows)


def loss_surface(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    directions: Sequence[Direction],
    steps: Sequence[float],
    on_point: PointCallback | None = None,
    batch_size: int = 500,
    bn_inputs: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Loss and accuracy at theta + a*d1 + b*d2 on the grid steps x steps: columns alpha,
    beta, loss, accuracy (alpha-major). `bn_inputs` as in `loss_slice`."""
    first, second = directions
    rows = []
    total = len(steps) ** 2
    for alpha in steps:
        for beta in steps:
            with perturbed(model, [first, second], [alpha, beta]):
                loss, accuracy = evaluate_loss(model, inputs, targets, batch_size, bn_inputs)
            rows.append({"alpha": alpha, "beta": beta, "loss": loss, "accuracy": accuracy})
            if on_point:
                on_point(len(rows), total)
    return pd.DataFrame(rows)


def _at(frame: pd.DataFrame, alpha: float, value: str) -> float:
    """`value` at the step nearest `alpha`."""
    return float(frame.loc[(frame["alpha"] - alpha).abs().idxmin(), value])


def slice_point(frame: pd.DataFrame, distance: float) -> dict[str, float]:
    """Absolute training loss and accuracy `distance` steps from the trained weights along
    one 1-D slice (mean of the two sides), and at the weights themselves.

    Returns:
        loss, accuracy (at +-distance, mean of both sides), centre_loss, centre_accuracy.
    """
    side = {
        value: (_at(frame, -distance, value) + _at(frame, distance, value)) / 2
        for value in ("loss", "accuracy")
    }
    return {
        **side,
        "centre_loss": _at(frame, 0.0, "loss"),
        "centre_accuracy": _at(frame, 0.0, "accuracy"),
    }


def across_directions(slices: pd.DataFrame, distance: float) -> pd.DataFrame:
    """`slice_point` of every net, BatchNorm mode and direction seed, then per net and mode
    the mean, min and max over the seeds: columns net, residual, bn, directions,
    loss/accuracy _mean/_min/_max."""
    rows = [
        {"net": net, "residual": bool(part["residual"].iloc[0]), "bn": bn, "seed": seed}
        | slice_point(part, distance)
        for (net, bn, seed), part in slices.groupby(["net", "bn", "seed"], sort=False)
    ]
    points = pd.DataFrame(rows)
    grouped = points.groupby(["net", "residual", "bn"], sort=False)
    table = grouped[["loss", "accuracy"]].agg(["mean", "min", "max"])
    table.columns = [f"{value}_{stat}" for value, stat in table.columns]
    table.insert(0, "directions", grouped.size())
    return table.reset_index()


def _grid(frame: pd.DataFrame, value: str = "loss") -> np.ndarray:
    """The surface as a (len(alpha), len(beta)) array."""
    return frame.pivot(index="alpha", columns="beta", values=value).sort_index().to_numpy()


def _local_minima(grid: np.ndarray, below: float) -> int:
    """Grid points strictly lower than all of their 8 neighbours (edges count too) whose loss
    is under `below`."""
    padded = np.pad(grid, 1, constant_values=np.inf)
    rows, cols = grid.shape
    lower = grid < below
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                lower &= grid < padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
    return int(lower.sum())


def surface_roughness(frame: pd.DataFrame, chance: float = math.log(10)) -> dict[str, float]:
    """Measures of how rough a 2-D loss surface is.

    Args:
        frame: columns alpha, beta, loss on a square grid.
        chance: the loss of a uniform guess (ln of the class count).

    Returns:
        local_minima: grid points lower than all 8 neighbours with a loss below
            MINIMUM_BELOW_CHANCE x chance (1 for a single bowl; dips in a plateau at chance
            level do not count).
        curvature: mean |second difference| of the log loss along both axes between
            neighbouring grid points (not divided by anything, so a surface with a wider
            range of loss is not made to look smoother).
        centre_loss, max_loss: the loss at the trained weights and the highest on the grid.
        below_chance: share of grid points where the net still beats a uniform guess.
    """
    grid = _grid(frame)
    log_grid = np.log(grid)
    second = np.concatenate(
        [np.abs(np.diff(log_grid, 2, axis=0)).ravel(), np.abs(np.diff(log_grid, 2, axis=1)).ravel()]
    )
    rows, cols = grid.shape
    return {
        "local_minima": _local_minima(grid, MINIMUM_BELOW_CHANCE * chance),
        "curvature": float(second.mean()),
        "centre_loss": float(grid[rows // 2, cols // 2]),
        "max_loss": float(grid.max()),
        "below_chance": float((grid < chance).mean()),
    }
