"""The loss-landscape view (Li et al. 2018, https://arxiv.org/abs/1712.09913): the charts of
a run's training loss around its trained weights, and the sentences that say what they show.

Measuring it, and the result files, are `resnet_core.studies.landscape`.
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

from resnet_core.analysis.landscape import (
    MINIMUM_BELOW_CHANCE,
    across_directions,
    surface_roughness,
)
from resnet_core.views.explain import fmt_ratio
from resnet_core.views.lockstep import net_colours

__all__ = [
    "slice_chart",
    "surface_chart",
    "slice_sentence",
    "slice_verdict",
    "artefact_sentence",
    "roughness_sentence",
    "roughness_verdict",
]


# Charts ------------------------------------------------------------------------------------
def _net_order(frame: pd.DataFrame) -> list[str]:
    """Plain nets first, then residual ones, each by depth."""
    nets = frame.drop_duplicates("net")[["net", "residual"]]
    return sorted(nets["net"], key=lambda n: (bool(nets.set_index("net").loc[n, "residual"]), n))


BN_DASHES = {"recomputed": [1, 0], "stale": [6, 4]}
BN_LABELS = {"recomputed": "recomputed", "stale": "stale"}  # the legend's words


def _spread(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, min and max of `value` over the direction seeds, per net, BatchNorm mode and
    step; accuracy in percent."""
    scale = 100.0 if value == "accuracy" else 1.0
    grouped = frame.assign(v=frame[value] * scale).groupby(["net", "bn", "alpha"], sort=False)["v"]
    table = grouped.agg(["mean", "min", "max"]).reset_index()
    table["statistics"] = table["bn"].map(BN_LABELS)
    return table


def _encodings(frame: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any]:
    """The slice chart's shared x, colour (plain reds, residual blues) and dash (one per
    BatchNorm mode present)."""
    nets = _net_order(frame)
    residual = frame.drop_duplicates("net").set_index("net")["residual"]
    colours = net_colours({n: bool(residual[n]) for n in nets})
    modes = [mode for mode in BN_DASHES if mode in set(table["bn"])]
    return {
        "x": alt.X("alpha:Q", title="step a along the direction (0 = trained weights)"),
        "color": alt.Color(
            "net:N", scale=colours, legend=alt.Legend(orient="top", title="network")
        ),
        "strokeDash": alt.StrokeDash(
            "statistics:N",
            scale=alt.Scale(
                domain=[BN_LABELS[m] for m in modes], range=[BN_DASHES[m] for m in modes]
            ),
            legend=alt.Legend(orient="top", title="BN statistics", symbolStrokeWidth=3),
        ),
    }


def _chance_rule(value: str, classes: int) -> tuple[alt.Chart, alt.Chart]:
    """A dotted grey rule at chance (loss ln classes, or accuracy 100 / classes %), labelled."""
    loss = value == "loss"
    level = math.log(classes) if loss else 100 / classes
    text = f"chance: ln {classes} = {level:.1f}" if loss else f"chance: {level:.0f} %"
    chance = pd.DataFrame({"y": [level], "label": [text]})
    rule = alt.Chart(chance).mark_rule(color="#7f7f7f", strokeDash=[2, 2]).encode(y="y:Q")
    label = (
        alt.Chart(chance)
        .mark_text(align="left", dx=4, dy=-8, color="#555555")
        .encode(y="y:Q", x=alt.value(0), text="label:N")
    )
    return rule, label


def slice_chart(
    frame: pd.DataFrame, value: str = "loss", classes: int = 10, height: int = 320
) -> alt.LayerChart:
    """Training loss (log scale) or accuracy along filter-normalised directions for several
    nets: plain reds, residual blues; a solid line is the mean over the direction seeds with
    BatchNorm statistics recomputed at every point, its band the seeds' min-max; a dashed
    line the same with the stale statistics of the trained weights (the artefact). A grey
    rule marks chance.

    Args:
        frame: columns net, residual, seed, bn, alpha, loss, accuracy.
        value: "loss" or "accuracy".
        classes: number of classes, for the chance line.
    """
    table = _spread(frame, value)
    encode = _encodings(frame, table)
    loss = value == "loss"
    title = "training loss (log scale)" if loss else "training accuracy (%)"
    y_scale = alt.Scale(type="log") if loss else alt.Scale(domain=[0, 100])
    base = alt.Chart(table)
    band = (
        base.transform_filter("datum.bn == 'recomputed'")
        .mark_area(opacity=0.18)
        .encode(
            x=encode["x"],
            y=alt.Y("min:Q", title=title, scale=y_scale),
            y2="max:Q",
            color=encode["color"],
        )
    )
    lines = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title=title, scale=y_scale),
        tooltip=[
            "net",
            "statistics",
            alt.Tooltip("alpha:Q", format=".2f"),
            alt.Tooltip("mean:Q", format=".3g", title=f"mean {value}"),
            alt.Tooltip("min:Q", format=".3g"),
            alt.Tooltip("max:Q", format=".3g"),
        ],
        **encode,
    )
    what = "loss" if loss else "accuracy"
    return alt.layer(band, lines, *_chance_rule(value, classes)).properties(
        title=f"Training {what}, 1-D slices", height=height
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
    frame = pd.concat([_surface(frame, net) for net in nets], ignore_index=True)
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
    return f"{start} from the trained weights (a = ±{distance:g}, mean of both sides)"


def _over(row: pd.Series, value: str, percent: bool) -> str:
    """A value over the direction seeds: its mean, and its min-max or "one direction"."""
    scale, unit = (100.0, " %") if percent else (1.0, "")
    mean = row[f"{value}_mean"] * scale
    text = f"{mean:.0f}{unit}" if percent else _loss(mean)
    if row["directions"] < 2:
        return f"{text} (one direction)"
    low, high = row[f"{value}_min"] * scale, row[f"{value}_max"] * scale
    span = f"{low:.0f}-{high:.0f}{unit}" if percent else f"{_loss(low)}-{_loss(high)}"
    return f"{text} ({span} over {row['directions']} directions)"


def _table(slices: pd.DataFrame, distance: float, bn: str) -> pd.DataFrame:
    table = across_directions(slices, distance)
    return table[table["bn"] == bn].set_index("net")


def slice_sentence(slices: pd.DataFrame, distance: float = 1.0) -> str:
    """Each net's training accuracy and loss `distance` steps out with BatchNorm statistics
    recomputed, with their spread over the direction seeds."""
    table = _table(slices, distance, "recomputed")
    parts = [
        f"{net} classifies {_over(table.loc[net], 'accuracy', True)} of the training images "
        f"at a loss of {_over(table.loc[net], 'loss', False)}"
        for net in _net_order(slices)
        if net in table.index
    ]
    return (
        f"{_distance_words(distance)}, with BatchNorm statistics recomputed: "
        + "; ".join(parts)
        + "."
    )


def _overlap(a: pd.Series, b: pd.Series, value: str) -> bool:
    return a[f"{value}_min"] <= b[f"{value}_max"] and b[f"{value}_min"] <= a[f"{value}_max"]


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


def slice_verdict(slices: pd.DataFrame, distance: float = 1.0) -> str:
    """Whether the residual net keeps more of its training accuracy `distance` steps out than
    the plain net of the same depth, and whether that difference exceeds the spread over
    the direction seeds (their min-max ranges do not overlap) or rests on one direction."""
    pair = _pair(slices)
    if pair is None:
        return ""
    plain, residual = pair
    table = _table(slices, distance, "recomputed")
    a, b = table.loc[plain], table.loc[residual]
    gap = (b["accuracy_mean"] - a["accuracy_mean"]) * 100
    leader, trailer = (residual, plain) if gap >= 0 else (plain, residual)
    head = (
        f"{leader} keeps {abs(gap):.0f} points more training accuracy than {trailer} this far out"
    )
    if min(a["directions"], b["directions"]) < 2:
        return f"{head} (one direction: no spread to compare it with)."
    if _overlap(a, b, "accuracy"):
        return f"{head}, but their ranges over the directions overlap: within the spread."
    return f"{head}, in every direction measured (their ranges over the directions do not overlap)."


def artefact_sentence(slices: pd.DataFrame, distance: float = 1.0) -> str:
    """The same points with the trained weights' stale BatchNorm statistics beside the
    recomputed ones: how far the stale loss is off, net by net."""
    if "stale" not in set(slices["bn"]):
        return ""
    stale, fresh = _table(slices, distance, "stale"), _table(slices, distance, "recomputed")
    nets = [n for n in _net_order(slices) if n in stale.index and n in fresh.index]
    parts = [
        f"{net} {_loss(stale.loc[net, 'loss_mean'])} instead of {_loss(fresh.loc[net, 'loss_mean'])}"
        for net in nets
    ]
    higher = all(stale.loc[n, "loss_mean"] > fresh.loc[n, "loss_mean"] for n in nets)
    ending = (
        "the stale statistics, not the landscape, make most of that loss"
        if higher
        else "the stale statistics change the loss, not always upward"
    )
    return (
        "Evaluated with the stale BatchNorm statistics of the trained weights (dashed), the "
        "mean loss there reads " + "; ".join(parts) + f": {ending}."
    )


def _surface(surfaces: pd.DataFrame, net: str) -> pd.DataFrame:
    """One net's surface with BatchNorm statistics recomputed (the first direction pair)."""
    part = surfaces[surfaces["net"] == net]
    if "bn" in part:
        part = part[part["bn"] == "recomputed"]
    if "seed" in part:
        part = part[part["seed"] == part["seed"].min()]
    return part


def roughness_sentence(surfaces: pd.DataFrame) -> str:
    """Each surface's roughness in numbers: local minima (well below chance only), curvature
    of the log loss, and how much of the grid beats chance."""
    parts = []
    side = surfaces["alpha"].nunique()
    for net in _net_order(surfaces):
        r = surface_roughness(_surface(surfaces, net))
        count = r["local_minima"]
        minima = f"{count} local minim{'um' if count == 1 else 'a'} below {MINIMUM_BELOW_CHANCE:g}x chance loss"
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
    a = surface_roughness(_surface(surfaces, plain))
    b = surface_roughness(_surface(surfaces, residual))
    more_minima = a["local_minima"] > b["local_minima"]
    more_curved = a["curvature"] > b["curvature"]
    if more_minima and more_curved:
        bowl = ", a single bowl" if b["local_minima"] == 1 else ""
        return (
            f"As in Li et al. Fig. 5, {plain}'s surface is rougher than {residual}'s{bowl}: "
            f"more local minima ({a['local_minima']} against {b['local_minima']}) and "
            f"{fmt_ratio(a['curvature'] / b['curvature'])} the curvature (one pair of directions)."
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
            "Li et al. Fig. 5 does not show here (one pair of directions)."
        )
    return (
        f"On this grid {plain}'s surface is not rougher than {residual}'s by any of these "
        "measures, unlike Li et al. Fig. 5 (one pair of directions)."
    )
