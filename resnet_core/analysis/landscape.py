"""The loss around a trained net's weights, along filter-normalised random directions.

Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets"
(https://arxiv.org/abs/1712.09913). A net's loss is plotted at theta + a*d1 (a 1-D slice)
or theta + a*d1 + b*d2 (a 2-D surface) for Gaussian directions d. Raw Gaussian directions
make nets of different weight scale incomparable (BatchNorm makes a net invariant to the
scale of a filter, so a small-weight net looks sharp), so each direction filter is rescaled
to the norm of the weight filter it perturbs (section 4 of the paper). As in the paper,
BatchNorm parameters and biases are not perturbed (their direction is zero), and the
BatchNorm layers use their running statistics (eval mode).

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

from resnet_core.common.modes import model_mode

__all__ = [
    "Direction",
    "perturbed_weights",
    "filter_normalize",
    "random_direction",
    "random_directions",
    "perturbed",
    "evaluate_loss",
    "loss_slice",
    "loss_surface",
    "coefficients",
    "slice_rise",
    "surface_roughness",
]

Direction = dict[str, torch.Tensor]  # parameter name -> a tensor shaped like that parameter
PointCallback = Callable[[int, int], None]  # (points done, points in all)
EPSILON = 1e-10  # keeps an all-zero filter from dividing by zero


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


def evaluate_loss(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 500
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on fixed inputs, in eval mode (BatchNorm uses its
    running statistics, so the loss depends on the weights alone)."""
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
) -> pd.DataFrame:
    """Loss and accuracy at theta + a*d for each a in `steps`: columns alpha, loss, accuracy."""
    rows = []
    for done, alpha in enumerate(steps):
        with perturbed(model, [direction], [alpha]):
            loss, accuracy = evaluate_loss(model, inputs, targets, batch_size)
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
) -> pd.DataFrame:
    """Loss and accuracy at theta + a*d1 + b*d2 on the grid steps x steps: columns alpha,
    beta, loss, accuracy (alpha-major)."""
    first, second = directions
    rows = []
    total = len(steps) ** 2
    for alpha in steps:
        for beta in steps:
            with perturbed(model, [first, second], [alpha, beta]):
                loss, accuracy = evaluate_loss(model, inputs, targets, batch_size)
            rows.append({"alpha": alpha, "beta": beta, "loss": loss, "accuracy": accuracy})
            if on_point:
                on_point(len(rows), total)
    return pd.DataFrame(rows)


def _at(frame: pd.DataFrame, alpha: float) -> float:
    """Loss at the step nearest `alpha`."""
    return float(frame.loc[(frame["alpha"] - alpha).abs().idxmin(), "loss"])


def slice_rise(frame: pd.DataFrame, distance: float) -> dict[str, float]:
    """How fast the loss rises `distance` steps from the trained weights along a 1-D slice.

    Returns:
        centre (loss at a=0), left and right (loss at -distance and +distance), mean (their
        mean), ratio (mean / centre).
    """
    centre = _at(frame, 0.0)
    left, right = _at(frame, -distance), _at(frame, distance)
    mean = (left + right) / 2
    return {"centre": centre, "left": left, "right": right, "mean": mean, "ratio": mean / centre}


def _grid(frame: pd.DataFrame, value: str = "loss") -> np.ndarray:
    """The surface as a (len(alpha), len(beta)) array."""
    return frame.pivot(index="alpha", columns="beta", values=value).sort_index().to_numpy()


def _local_minima(grid: np.ndarray) -> int:
    """Grid points strictly lower than all of their 8 neighbours (edges count too)."""
    padded = np.pad(grid, 1, constant_values=np.inf)
    rows, cols = grid.shape
    lower = np.ones_like(grid, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                lower &= grid < padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
    return int(lower.sum())


def surface_roughness(frame: pd.DataFrame, chance: float = math.log(10)) -> dict[str, float]:
    """Measures of how rough a 2-D loss surface is, on log loss (the heat map's scale).

    Args:
        frame: columns alpha, beta, loss on a square grid.
        chance: the loss of a uniform guess (ln of the class count).

    Returns:
        local_minima: grid points lower than all 8 neighbours (1 for a single bowl).
        curvature: mean |second difference| along both axes, divided by the range of log
            loss; a smooth bowl has small, even curvature, a chaotic surface large.
        centre_loss, max_loss: the loss at the trained weights and the highest on the grid.
        below_chance: share of grid points where the net still beats a uniform guess.
    """
    grid = _grid(frame)
    log_grid = np.log(grid)
    span = float(log_grid.max() - log_grid.min()) or 1.0
    second = np.concatenate(
        [np.abs(np.diff(log_grid, 2, axis=0)).ravel(), np.abs(np.diff(log_grid, 2, axis=1)).ravel()]
    )
    rows, cols = grid.shape
    return {
        "local_minima": _local_minima(grid),
        "curvature": float(second.mean()) / span,
        "centre_loss": float(grid[rows // 2, cols // 2]),
        "max_loss": float(grid.max()),
        "below_chance": float((grid < chance).mean()),
    }
