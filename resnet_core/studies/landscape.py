"""Measuring a run's loss landscape (Li et al. 2018, https://arxiv.org/abs/1712.09913): its
training loss around its trained weights, and the result files shipped in
checkpoints/demo/landscape/.

The measurement itself (filter-normalised directions, perturbation, loss) lives in
`resnet_core.analysis.landscape`; this module picks a run's weights and training images and
reads and writes result files. Their charts and sentences are `resnet_core.views.landscape`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from resnet_core.analysis.landscape import (
    coefficients,
    evaluate_loss,
    loss_slice,
    loss_surface,
    perturbed,
    random_directions,
)
from resnet_core.analysis.sampling import (
    SAMPLE_FILE,
    sample_record,
    sample_text,
    stratified_indices,
)
from resnet_core.common.env import provenance
from resnet_core.common.files import json_bytes, read_json, write_new
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec
from resnet_core.training.data import Cifar10, normalization, subset_indices
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import RunError, load_run

__all__ = [
    "LandscapeError",
    "Shipped",
    "PAPER_URL",
    "check_run",
    "Sample",
    "BN_MODES",
    "training_sample",
    "run_landscape",
    "point_loss",
    "result_record",
    "write_result",
    "read_result",
    "landscape_root",
    "read_shipped",
    "record_sample",
    "check_sample",
    "curves_of",
]

PAPER_URL = "https://arxiv.org/abs/1712.09913"
FOLDER = "landscape"  # under checkpoints/demo
SLICES_FILE = "slices.csv"
SURFACES_FILE = "surfaces.csv"
# "recomputed": BatchNorm statistics recomputed at every point on training images (the
# measurement); "stale": the trained weights' running statistics (the artefact, for contrast).
BN_MODES = ("recomputed", "stale")


class LandscapeError(ValueError):
    """A run whose landscape cannot be measured here (e.g. trained on synthetic data)."""


# Measuring a run -------------------------------------------------------------------------
def check_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's config, after checking it has trained weights on CIFAR-10.

    Raises:
        RunError: no best.pt (the run has not finished an epoch, or shipped without weights).
        LandscapeError: trained on the synthetic stand-in, whose training images are not
            CIFAR-10's.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "best.pt").is_file():
        raise RunError(
            f"{run_dir}: no best.pt, so no trained weights to measure around; pick a run "
            "that has finished at least one epoch"
        )
    config = read_json(run_dir / "config.json")
    config = config if isinstance(config, dict) else {}
    if config.get("dataset") == "synthetic":
        raise LandscapeError(
            f"{run_dir.name} was trained on the synthetic stand-in, not CIFAR-10: its "
            "training-loss landscape on CIFAR-10 images would mean nothing; pick a CIFAR-10 run"
        )
    load_run(run_dir)  # a damaged checkpoint or spec is refused here, before any run is measured
    return config


@dataclass(frozen=True)
class Sample:
    """The training images a landscape is measured on, and the disjoint ones BatchNorm
    statistics are recomputed on; both drawn across classes from the images the run trained
    on. `indices` and `bn_indices` index the full training split."""

    inputs: torch.Tensor  # (N, 3, 32, 32), normalised as the run was trained
    targets: torch.Tensor  # (N,)
    bn_inputs: torch.Tensor  # (M, 3, 32, 32)
    indices: torch.Tensor
    bn_indices: torch.Tensor
    seed: int

    def record(self) -> dict[str, Any]:
        """`sample.json`: the evaluated images, plus those the statistics came from."""
        extra = {"bn_indices": [int(i) for i in self.bn_indices.tolist()]}
        return sample_record("train", self.indices, self.seed, **extra)


def _normalised(dataset: Cifar10, config: dict[str, Any], index: torch.Tensor) -> torch.Tensor:
    mean, std = normalization(config.get("normalize"))
    batch = dataset.train_images[index].float() / 255  # (N, 3, 32, 32) in [0, 1]
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def training_sample(
    dataset: Cifar10, config: dict[str, Any], images: int, seed: int, bn_images: int
) -> Sample:
    """`images` training images and `bn_images` others, each the same number per class,
    seeded, from the run's training subset if it trained on one."""
    labels = dataset.train_labels
    pool = torch.arange(len(labels))
    if config.get("subset"):
        pool = subset_indices(labels, int(config["subset"]), dataset.num_classes)
    pick = pool[stratified_indices(labels[pool], images, seed)]
    taken = torch.searchsorted(pool, pick)  # positions of `pick` within the pool
    bn = pool[stratified_indices(labels[pool], bn_images, seed + 1, exclude=taken)]
    return Sample(
        _normalised(dataset, config, pick),
        labels[pick],
        _normalised(dataset, config, bn),
        pick,
        bn,
        seed,
    )


def _curves(
    model: torch.nn.Module,
    sample: Sample,
    dims: int,
    steps: list[float],
    seeds: Sequence[int],
    bn_modes: Sequence[str],
    on_point: Callable[[int, int], None] | None,
) -> pd.DataFrame:
    """Every (direction seed, BatchNorm mode) curve or surface of one net, stacked."""
    measure = loss_slice if dims == 1 else loss_surface
    per_curve = len(steps) ** dims
    total, frames = per_curve * len(seeds) * len(bn_modes), []
    for seed in seeds:
        directions = random_directions(model, dims, seed)
        for bn in bn_modes:
            done = len(frames) * per_curve
            report = (lambda d, _t, done=done: on_point(done + d, total)) if on_point else None
            bn_inputs = sample.bn_inputs if bn == "recomputed" else None
            along = directions[0] if dims == 1 else directions
            frame = measure(
                model, sample.inputs, sample.targets, along, steps, report, 500, bn_inputs
            )
            frame.insert(0, "seed", seed)
            frame.insert(1, "bn", bn)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def run_landscape(
    run_dir: str | os.PathLike,
    sample: Sample,
    dims: int = 1,
    grid: int = 21,
    seeds: Sequence[int] = (0,),
    bn_modes: Sequence[str] = ("recomputed",),
    device: str | torch.device = "cpu",
    on_point: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """A run's training loss on 1-D slices or 2-D surfaces around its best weights.

    Args:
        run_dir: a run folder with best.pt.
        sample: the training images (`training_sample` of the run's config).
        dims: 1 (theta + a*d1) or 2 (theta + a*d1 + b*d2).
        grid: points per axis over [-1, 1]; odd counts include the trained weights.
        seeds: one set of random directions per seed.
        bn_modes: BN_MODES to measure with, each on the same directions.
        device: where to evaluate.
        on_point: called with (points done, points in all) after each point.

    Returns:
        Columns net, residual, seed, bn, alpha, [beta,] loss, accuracy.
    """
    if dims not in (1, 2):
        raise LandscapeError(f"dims: {dims} is not allowed; choose 1 or 2")
    unknown = [mode for mode in bn_modes if mode not in BN_MODES]
    if unknown or not bn_modes:
        raise LandscapeError(f"bn: {unknown or 'none'} not allowed; choose from {BN_MODES}")
    check_run(run_dir)
    model, info = load_run(run_dir, which="best", device=device)
    moved = dataclasses.replace(
        sample,
        inputs=sample.inputs.to(device),
        targets=sample.targets.to(device),
        bn_inputs=sample.bn_inputs.to(device),
    )
    frame = _curves(model, moved, dims, coefficients(grid), seeds, bn_modes, on_point)
    frame.insert(0, "net", info.model)
    frame.insert(1, "residual", bool(model.spec.residual))
    return frame


def point_loss(
    spec: ArchSpec,
    state: dict[str, torch.Tensor],
    sample: Sample,
    seed: int,
    steps: tuple[float, ...],
    bn: str = "recomputed",
) -> tuple[float, float]:
    """(loss, accuracy) at one point theta + sum(steps[k] * d_k) of a net rebuilt from its
    weights: the unit the page caches, one point at a time, so its progress bar can move."""
    # channels_last: CPU convolutions ran 2-3x faster in that layout here (2-core EPYC)
    model = build_model(spec).to(memory_format=torch.channels_last)
    model.load_state_dict(state)
    directions = random_directions(model, len(steps), seed)
    bn_inputs = sample.bn_inputs if bn == "recomputed" else None
    with perturbed(model, directions, steps):
        return evaluate_loss(model, sample.inputs, sample.targets, bn_inputs=bn_inputs)


# Result files ------------------------------------------------------------------------------
def result_record(command: str, settings: dict[str, Any], seconds: dict[str, float]) -> dict:
    """What a result file needs beside it: how it was made, where, when, and how long each
    net took (no machine paths)."""
    made = provenance(command)
    return {
        "paper": PAPER_URL,
        "command": made.pop("command"),
        "settings": settings,
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        **made,
    }


def curves_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per measured curve or surface: its net, direction seed and `bn_stats`."""
    keys = frame[["net", "seed", "bn"]].drop_duplicates()
    return [
        {"net": str(net), "seed": int(seed), "bn_stats": str(bn)}
        for net, seed, bn in keys.itertuples(index=False)
    ]


def write_result(frame: pd.DataFrame, path: str | os.PathLike, record: dict) -> None:
    """Write the frame as CSV and its record as JSON beside it (same name, .json)."""
    path = Path(path)  # only where nothing is: an existing file is FileExistsError, untouched
    write_new(path, lambda out: out.write(frame.to_csv(index=False).encode("utf-8")))
    write_new(path.with_suffix(".json"), lambda out: out.write(json_bytes(record)))


def check_sample(folder: str | os.PathLike, sample: Sample) -> Path:
    """The path of `folder`'s sample.json, after checking that an existing one holds this
    same sample (two results in one folder share their images); LandscapeError if not."""
    path = Path(folder) / SAMPLE_FILE
    if path.exists() and read_json(path) != sample.record():
        raise LandscapeError(f"{path}: holds another sample; write the result to another folder")
    return path


def record_sample(folder: str | os.PathLike, sample: Sample) -> Path:
    """Write `sample.json` into `folder` (refused as `check_sample` says)."""
    path = check_sample(folder, sample)
    if path.exists():  # it holds this same sample (checked): kept, never replaced
        return path
    write_new(path, lambda out: out.write(sample_text(sample.record()).encode("utf-8")))
    return path


def read_result(path: str | os.PathLike) -> tuple[pd.DataFrame, dict] | None:
    """(frame, record) of a result written by `write_result`, or None if either is missing."""
    path = Path(path)
    record = read_json(path.with_suffix(".json"))
    if not path.is_file() or not isinstance(record, dict):
        return None
    return pd.read_csv(path), record


def landscape_root() -> Path:
    """Where the shipped landscape results live (checkpoints/demo/landscape)."""
    return shipped_root() / FOLDER


@dataclass(frozen=True)
class Shipped:
    """The shipped results: 1-D slices of every degradation net, 2-D surfaces of some."""

    slices: pd.DataFrame
    slices_record: dict
    surfaces: pd.DataFrame
    surfaces_record: dict


def read_shipped(root: str | os.PathLike | None = None) -> Shipped | None:
    """The shipped results, or None when this checkout has none."""
    root = Path(root) if root else landscape_root()
    slices, surfaces = read_result(root / SLICES_FILE), read_result(root / SURFACES_FILE)
    if slices is None or surfaces is None:
        return None
    return Shipped(slices[0], slices[1], surfaces[0], surfaces[1])
