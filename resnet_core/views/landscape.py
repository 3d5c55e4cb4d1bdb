"""The loss-landscape view (Li et al. 2018, https://arxiv.org/abs/1712.09913): measuring a
run's training loss around its trained weights, the shipped results, their charts, and the
sentences that say what they show.

The measurement itself (filter-normalised directions, perturbation, loss) lives in
`resnet_core.analysis.landscape`; this module picks a run's weights and training images,
reads and writes result files, and turns the numbers into pictures and words.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import torch

from resnet_core.analysis.landscape import (
    coefficients,
    evaluate_loss,
    loss_slice,
    loss_surface,
    perturbed,
    random_directions,
    slice_rise,
    surface_roughness,
)
from resnet_core.common.device import machine_summary
from resnet_core.common.files import read_json, write_bytes_atomic, write_json_atomic
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec
from resnet_core.training.data import Cifar10, normalization, stratified_subset
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import RunError, load_run
from resnet_core.views.charts import PLAIN_COLOUR, RESIDUAL_COLOUR
from resnet_core.views.explain import fmt_ratio

__all__ = [
    "LandscapeError",
    "Shipped",
    "PAPER_URL",
    "check_run",
    "training_batch",
    "run_landscape",
    "point_loss",
    "result_record",
    "write_result",
    "read_result",
    "landscape_root",
    "read_shipped",
    "slice_chart",
    "surface_chart",
    "rise_sentence",
    "rise_verdict",
    "roughness_sentence",
    "roughness_verdict",
]

PAPER_URL = "https://arxiv.org/abs/1712.09913"
FOLDER = "landscape"  # under checkpoints/demo
SLICES_FILE = "slices.csv"
SURFACES_FILE = "surfaces.csv"


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
    config = read_json(run_dir / "config.json") or {}
    if config.get("dataset") == "synthetic":
        raise LandscapeError(
            f"{run_dir.name} was trained on the synthetic stand-in, not CIFAR-10: its "
            "training-loss landscape on CIFAR-10 images would mean nothing; pick a CIFAR-10 run"
        )
    return config


def training_batch(
    dataset: Cifar10, config: dict[str, Any], images: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded pick of `images` training images (from the run's subset if it trained
    on one), normalised the way the run was trained: (N, 3, 32, 32) floats and N labels."""
    if config.get("subset"):
        dataset = stratified_subset(dataset, int(config["subset"]))
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(dataset.train_labels), generator=generator)[:images]
    mean, std = normalization(config.get("normalize"))
    batch = dataset.train_images[pick].float() / 255  # (N, 3, 32, 32) in [0, 1]
    batch = (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return batch, dataset.train_labels[pick]


def run_landscape(
    run_dir: str | os.PathLike,
    dataset: Cifar10,
    dims: int = 1,
    grid: int = 21,
    images: int = 200,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_point: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """A run's training loss on a 1-D slice or a 2-D surface around its best weights.

    Args:
        run_dir: a run folder with best.pt.
        dataset: CIFAR-10 (its training images are used).
        dims: 1 (theta + a*d1) or 2 (theta + a*d1 + b*d2).
        grid: points per axis over [-1, 1]; odd counts include the trained weights.
        images: how many training images (a fixed, seeded pick).
        seed: seeds both the directions and the image pick.
        device: where to evaluate.
        on_point: called with (points done, points in all) after each point.

    Returns:
        Columns net, residual, alpha, [beta,] loss, accuracy.
    """
    if dims not in (1, 2):
        raise LandscapeError(f"dims: {dims} is not allowed; choose 1 or 2")
    config = check_run(run_dir)
    model, info = load_run(run_dir, which="best", device=device)
    inputs, targets = training_batch(dataset, config, images, seed)
    inputs, targets = inputs.to(device), targets.to(device)
    directions = random_directions(model, dims, seed)
    steps = coefficients(grid)
    if dims == 1:
        frame = loss_slice(model, inputs, targets, directions[0], steps, on_point)
    else:
        frame = loss_surface(model, inputs, targets, directions, steps, on_point)
    frame.insert(0, "net", info.model)
    frame.insert(1, "residual", bool(model.spec.residual))
    return frame


def point_loss(
    spec: ArchSpec,
    state: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    seed: int,
    steps: tuple[float, ...],
) -> tuple[float, float]:
    """(loss, accuracy) at one point theta + sum(steps[k] * d_k) of a net rebuilt from its
    weights: the unit the page caches, one point at a time, so its progress bar can move."""
    # channels_last: CPU convolutions ran 2-3x faster in that layout here (2-core EPYC)
    model = build_model(spec).to(memory_format=torch.channels_last)
    model.load_state_dict(state)
    directions = random_directions(model, len(steps), seed)
    with perturbed(model, directions, steps):
        return evaluate_loss(model, inputs, targets)


# Result files ------------------------------------------------------------------------------
def result_record(command: str, settings: dict[str, Any], seconds: dict[str, float]) -> dict:
    """What a result file needs beside it: how it was made, where, when, and how long each
    net took (no machine paths)."""
    return {
        "paper": PAPER_URL,
        "command": command,
        "settings": settings,
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "hardware": {
            "machine": machine_summary(),
            "cpu": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(frame: pd.DataFrame, path: str | os.PathLike, record: dict) -> None:
    """Write the frame as CSV and its record as JSON beside it (same name, .json)."""
    path = Path(path)
    write_bytes_atomic(path, frame.to_csv(index=False).encode("utf-8"))
    write_json_atomic(path.with_suffix(".json"), record)


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


# Charts ------------------------------------------------------------------------------------
def _net_order(frame: pd.DataFrame) -> list[str]:
    """Plain nets first, then residual ones, each by depth."""
    nets = frame.drop_duplicates("net")[["net", "residual"]]
    return sorted(nets["net"], key=lambda n: (bool(nets.set_index("net").loc[n, "residual"]), n))


def _colours(frame: pd.DataFrame, nets: list[str]) -> list[str]:
    residual = frame.drop_duplicates("net").set_index("net")["residual"]
    return [RESIDUAL_COLOUR if residual[n] else PLAIN_COLOUR for n in nets]


def _dashes(nets: list[str]) -> list[list[int]]:
    """Solid lines for the deepest net of each family, dashed for the shallower ones."""
    depth = {n: int("".join(c for c in n if c.isdigit()) or 0) for n in nets}
    deepest = max(depth.values())
    return [[1, 0] if depth[n] == deepest else [8, 4] for n in nets]


def slice_chart(frame: pd.DataFrame, classes: int = 10, height: int = 340) -> alt.LayerChart:
    """Training loss (log scale) along one direction for several nets: plain red, residual
    blue, the deeper net of each family solid; a grey rule marks chance (ln classes), the
    loss of a net that gives every class the same probability.

    Args:
        frame: columns net, residual, alpha, loss (and accuracy).
        classes: number of classes, for the chance line.
    """
    nets = _net_order(frame)
    legend = alt.Legend(orient="top", title="network", symbolType="stroke", symbolStrokeWidth=3)
    lines = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("alpha:Q", title="step a along the direction (0 = trained weights)"),
            y=alt.Y("loss:Q", title="training loss (cross-entropy, log scale)").scale(type="log"),
            color=alt.Color(
                "net:N", scale=alt.Scale(domain=nets, range=_colours(frame, nets)), legend=legend
            ),
            strokeDash=alt.StrokeDash(
                "net:N", scale=alt.Scale(domain=nets, range=_dashes(nets)), legend=legend
            ),
            tooltip=[
                "net",
                alt.Tooltip("alpha:Q", format=".2f"),
                alt.Tooltip("loss:Q", format=".3g"),
                alt.Tooltip("accuracy:Q", format=".1%"),
            ],
        )
    )
    chance = pd.DataFrame(
        {"loss": [math.log(classes)], "label": [f"chance: ln {classes} = {math.log(classes):.1f}"]}
    )
    rule = alt.Chart(chance).mark_rule(color="#7f7f7f", strokeDash=[2, 2]).encode(y="loss:Q")
    label = (
        alt.Chart(chance)
        .mark_text(align="left", dx=4, dy=-8, color="#555555")
        .encode(y="loss:Q", x=alt.value(0), text="label:N")
    )
    return alt.layer(lines, rule, label).properties(
        title="Training loss along one filter-normalised direction", height=height
    )


# Loss levels that bound the heat map's bands: 1-2-5 steps read easily off a legend.
LEVELS = [0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
# Dark (low loss) to light (high loss), viridis: ordered in lightness, readable by the
# colour-blind, and its mid-tones stay apart on a washed-out projector.
BAND_COLOURS = [
    "#440154",
    "#482878",
    "#3e4989",
    "#31688e",
    "#26828e",
    "#1f9e89",
    "#35b779",
    "#6ece58",
    "#b5de2b",
    "#fde725",
]


def _levels(losses: pd.Series) -> list[float]:
    """The band edges that fall inside the data's range (at most len(BAND_COLOURS) - 1)."""
    low, high = float(losses.min()), float(losses.max())
    inside = [level for level in LEVELS if low < level < high]
    return inside[: len(BAND_COLOURS) - 1]


def _band_labels(levels: list[float]) -> list[str]:
    bounds = [f"{x:g}" for x in levels]
    if not bounds:
        return ["all"]
    return (
        [f"< {bounds[0]}"]
        + [f"{a} - {b}" for a, b in zip(bounds, bounds[1:], strict=False)]
        + [f"> {bounds[-1]}"]
    )


def _banded(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str], float]:
    """The surface with each point's cell edges and loss band; the band labels, their
    colours (dark to light over the whole palette) and the half grid step."""
    frame = frame.copy()
    half = _half_step(frame)
    for axis in ("alpha", "beta"):
        frame[f"{axis}_low"] = frame[axis] - half
        frame[f"{axis}_high"] = frame[axis] + half
    levels = _levels(frame["loss"])
    labels = _band_labels(levels)
    bands = pd.cut(frame["loss"], [0.0, *levels, math.inf], labels=labels, right=False)
    frame["band"] = bands.astype(str)
    last = len(BAND_COLOURS) - 1
    colours = [BAND_COLOURS[round(i * last / max(len(labels) - 1, 1))] for i in range(len(labels))]
    return frame, labels, colours, half


def _grid_axis(field: str, title: str, extent: list[float]) -> dict:
    return {
        "field": field,
        "type": "quantitative",
        "title": title,
        "scale": alt.Scale(domain=extent, nice=False),
        "axis": alt.Axis(grid=False),
    }


def _heat(base: alt.Chart, labels: list[str], colours: list[str], extent: list[float]) -> alt.Chart:
    """One rectangle per grid point, coloured by its loss band."""
    return base.mark_rect().encode(
        x=alt.X(**_grid_axis("alpha_low", "step a along d1", extent)),
        x2="alpha_high:Q",
        y=alt.Y(**_grid_axis("beta_low", "step b along d2", extent)),
        y2="beta_high:Q",
        color=alt.Color(
            "band:N",
            title="training loss",
            scale=alt.Scale(domain=labels, range=colours),
            sort=labels,
            legend=alt.Legend(orient="right"),
        ),
        tooltip=[
            "net",
            alt.Tooltip("alpha:Q", format=".2f"),
            alt.Tooltip("beta:Q", format=".2f"),
            alt.Tooltip("loss:Q", format=".3g"),
            alt.Tooltip("accuracy:Q", format=".1%"),
        ],
    )


def surface_chart(frame: pd.DataFrame, side: int = 340) -> alt.FacetChart:
    """Heat maps of the training loss over (a, b), one per net, side by side on one shared
    scale of loss bands (contour-like: each colour is one band of a 1-2-5 log scale), with a
    cross at the trained weights.

    Args:
        frame: columns net, residual, alpha, beta, loss.
    """
    nets = _net_order(frame)
    frame, labels, colours, half = _banded(frame)
    base = alt.Chart(frame)
    heat = _heat(base, labels, colours, [-1 - half, 1 + half])
    centre = (
        base.transform_filter("datum.alpha == 0 && datum.beta == 0")
        .mark_point(shape="cross", size=260, filled=True, color="#ffffff", stroke="#000000")
        .encode(x="alpha:Q", y="beta:Q")
    )
    return (
        alt.layer(heat, centre)
        .properties(width=side, height=side)
        .facet(
            column=alt.Column(
                "net:N",
                title=None,
                sort=nets,
                header=alt.Header(labelFontSize=18, labelFontWeight="bold"),
            )
        )
        .properties(title="Training loss around the trained weights (+ marks them)")
    )


def _half_step(frame: pd.DataFrame) -> float:
    """Half the grid spacing, so each cell is centred on its point."""
    steps = sorted(frame["alpha"].unique())
    return (steps[1] - steps[0]) / 2 if len(steps) > 1 else 0.5


# Sentences -------------------------------------------------------------------------------
def _loss(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:,.0f}"


def _distance_words(distance: float) -> str:
    words = {1.0: "One filter-normalised step", 0.5: "Half a filter-normalised step"}
    start = words.get(distance, f"{distance:g} of a filter-normalised step")
    return f"{start} away (a = ±{distance:g}, mean of both sides)"


def rise_sentence(slices: pd.DataFrame, distance: float = 1.0) -> str:
    """How far each net's training loss rises `distance` steps from its trained weights (mean
    of the two sides), e.g. "One filter-normalised step away (a = ±1, mean of both sides),
    plain56's training loss rises from 0.84 to 18 (21x); resnet56's from 0.27 to 27 (97x)."."""
    parts = []
    for index, net in enumerate(_net_order(slices)):
        rise = slice_rise(slices[slices["net"] == net], distance)
        middle = "'s training loss rises from" if index == 0 else "'s from"
        parts.append(
            f"{net}{middle} {_loss(rise['centre'])} to {_loss(rise['mean'])} "
            f"({fmt_ratio(rise['ratio'])})"
        )
    return f"{_distance_words(distance)}, " + "; ".join(parts) + "."


def _pair(frame: pd.DataFrame) -> tuple[str, str] | None:
    """(plain, residual) nets of the same depth, deepest first, or None."""
    nets = _net_order(frame)
    residual = frame.drop_duplicates("net").set_index("net")["residual"]
    by_depth: dict[str, dict[bool, str]] = {}
    for net in nets:
        depth = "".join(c for c in net if c.isdigit())
        by_depth.setdefault(depth, {})[bool(residual[net])] = net
    pairs = [v for _, v in sorted(by_depth.items(), key=lambda kv: -int(kv[0] or 0)) if len(v) == 2]
    return (pairs[0][False], pairs[0][True]) if pairs else None


def rise_verdict(slices: pd.DataFrame, distance: float = 1.0) -> str:
    """Whether, `distance` steps out, the plain net's loss climbs faster than the residual net's
    of the same depth (Li et al.'s finding), in absolute and in relative terms; says plainly
    which way each measure goes."""
    pair = _pair(slices)
    if pair is None:
        return ""
    plain, residual = pair
    a = slice_rise(slices[slices["net"] == plain], distance)
    b = slice_rise(slices[slices["net"] == residual], distance)
    by = f"by {_loss(a['mean'] - a['centre'])} against {_loss(b['mean'] - b['centre'])}"
    times = f"{fmt_ratio(a['ratio'])} against {fmt_ratio(b['ratio'])}"
    absolute = a["mean"] - a["centre"] > b["mean"] - b["centre"]
    relative = a["ratio"] > b["ratio"]
    if absolute and relative:
        return (
            f"As Li et al. found, {plain}'s loss climbs faster than {residual}'s: {by} "
            f"({times} its starting value)."
        )
    if absolute:
        return (
            f"{plain}'s loss climbs more ({by}), but {residual}'s climbs more relative to its "
            f"lower starting value ({fmt_ratio(b['ratio'])} against {fmt_ratio(a['ratio'])})."
        )
    if relative:
        return (
            f"{plain}'s loss climbs more relative to its starting value ({times}), but "
            f"{residual}'s climbs more (by {_loss(b['mean'] - b['centre'])} against "
            f"{_loss(a['mean'] - a['centre'])})."
        )
    return (
        f"Unlike Li et al.'s deep plain nets, {plain}'s loss climbs less than {residual}'s this "
        f"far out: {by} ({times} its starting value)."
    )


def roughness_sentence(surfaces: pd.DataFrame) -> str:
    """Each surface's roughness in numbers: local minima, curvature, and how much of the grid
    stays near the minimum."""
    parts = []
    side = surfaces["alpha"].nunique()
    for net in _net_order(surfaces):
        r = surface_roughness(surfaces[surfaces["net"] == net])
        minima = (
            "1 local minimum" if r["local_minima"] == 1 else f"{r['local_minima']} local minima"
        )
        parts.append(
            f"{net}: {minima}, curvature {r['curvature']:.3f}, highest loss "
            f"{_loss(r['max_loss'])}, better than chance on {r['below_chance']:.0%} of the grid"
        )
    return f"On the {side}x{side} grid: " + "; ".join(parts) + "."


def roughness_verdict(surfaces: pd.DataFrame) -> str:
    """Whether the plain surface is rougher than the residual one of the same depth, as in
    Li et al. Fig. 5, measured by local minima and curvature; says which measures disagree."""
    pair = _pair(surfaces)
    if pair is None:
        return ""
    plain, residual = pair
    a = surface_roughness(surfaces[surfaces["net"] == plain])
    b = surface_roughness(surfaces[surfaces["net"] == residual])
    more_minima = a["local_minima"] > b["local_minima"]
    more_curved = a["curvature"] > b["curvature"]
    if more_minima and more_curved:
        bowl = ", a single bowl" if b["local_minima"] == 1 else ""
        return (
            f"As in Li et al. Fig. 5, {plain}'s surface is rougher than {residual}'s{bowl}: "
            f"more local minima ({a['local_minima']} against {b['local_minima']}) and "
            f"{fmt_ratio(a['curvature'] / b['curvature'])} the curvature."
        )
    found = [
        text
        for flag, text in ((more_minima, "more local minima"), (more_curved, "more curvature"))
        if flag
    ]
    if found:
        return (
            f"{plain}'s surface has {' and '.join(found)} than {residual}'s, but on this coarse "
            f"grid it is not rougher by every measure: the chaotic, many-minima surface of "
            "Li et al. Fig. 5 does not show here."
        )
    return (
        f"On this grid {plain}'s surface is not rougher than {residual}'s by any of these "
        "measures, unlike Li et al. Fig. 5."
    )
