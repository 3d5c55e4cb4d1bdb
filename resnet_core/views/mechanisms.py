"""The Mechanisms page's charts and sentences: shattered gradients, short paths and the pull
toward the identity, from the frames `resnet_core.studies.mechanisms` writes. Every number
in a sentence is computed from the frame the chart beside it draws.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from resnet_core.views.explain import fmt_ratio
from resnet_core.views.lockstep import PLAIN_COLOUR, RESIDUAL_COLOUR

__all__ = [
    "VARIANT_COLOURS",
    "along_chart",
    "along_sentence",
    "correlation_chart",
    "depth_sentence",
    "variance_chart",
    "skip_chart",
    "variance_sentence",
    "paths_chart",
    "paths_sentence",
    "effective_lengths",
    "per_branch",
    "training_chart",
    "training_table",
    "training_sentence",
]

# Plain nets in reds, residual variants in blues, greens and purples (fixed, so that a
# variant keeps its colour on every chart and slide).
VARIANT_COLOURS = {
    "plain": PLAIN_COLOUR,
    "plain without norm": "#ff7f0e",
    "ResNet": RESIDUAL_COLOUR,
    "pre-activation": "#17becf",
    "zero-init": "#2ca02c",
    "SkipInit": "#9467bd",
    "Fixup": "#bcbd22",
    "ResNet without norm": "#7f7f7f",
}


def _colour(variants: list[str], title: str = "variant", legend: bool = True) -> alt.Color:
    present = [v for v in VARIANT_COLOURS if v in variants]
    scale = alt.Scale(domain=present, range=[VARIANT_COLOURS[v] for v in present])
    shown = (
        alt.Legend(symbolType="stroke", symbolStrokeWidth=4, symbolOpacity=1) if legend else None
    )
    return alt.Color("variant:N", scale=scale, sort=present, title=title, legend=shown)


def _spread(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean, min and max of `value` over seeds, per `keys`, in the frame's order."""
    return frame.groupby(keys, sort=False)[value].agg(["mean", "min", "max"]).reset_index()


def _num(value: float) -> str:
    """Two decimals, never '-0.00'."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _range(row: pd.Series) -> str:
    return f"{_num(row['min'])} to {_num(row['max'])}"


# Shattered gradients -----------------------------------------------------------------------
def along_chart(along: pd.DataFrame, depth: int, height: int = 130) -> alt.FacetChart:
    """The gradient at one input pixel along the line, plain and ResNet at `depth`, each
    scaled to its largest value (the shape matters, not the size), one row per net."""
    frame = along[along["depth"] == depth].copy()
    frame["scaled"] = frame["gradient"] / frame.groupby("net")["gradient"].transform(
        lambda g: g.abs().max() or 1.0
    )
    line = (
        alt.Chart(frame, height=height)
        .mark_line(point=alt.OverlayMarkDef(size=14))
        .encode(
            x=alt.X("t:Q", title="along the line: first image (0) to second image (1)"),
            y=alt.Y("scaled:Q", title="gradient (scaled)", scale=alt.Scale(domain=[-1, 1])),
            color=_colour(list(frame["variant"]), "net"),
            tooltip=[
                "net",
                alt.Tooltip("t:Q", format=".3f"),
                alt.Tooltip("gradient:Q", format=".3g"),
            ],
        )
    )
    return line.facet(row=alt.Row("net:N", title=None, sort=list(dict.fromkeys(frame["net"]))))


def along_sentence(shatter: pd.DataFrame, depth: int) -> str:
    """Plain against ResNet at `depth`: the neighbour correlation, its seed range, and
    whether the ranges separate."""
    table = _spread(shatter[shatter["depth"] == depth], ["variant"], "correlation")
    table = table.set_index("variant")
    plain, residual = table.loc["plain"], table.loc["ResNet"]
    seeds = shatter["seed"].nunique()
    said = (
        f"At depth {depth}, neighbouring gradients along the line correlate at "
        f"{_num(plain['mean'])} in plain-{depth} and {_num(residual['mean'])} in ResNet-{depth} "
        f"(mean of {seeds} seeds at init; ranges {_range(plain)} and {_range(residual)}; "
        "1 is a smooth curve, 0 is white noise)."
    )
    if plain["max"] < residual["min"]:
        return said + " The ranges do not overlap: the plain net's gradient is the more shattered."
    if residual["max"] < plain["min"]:
        return said + " Here the plain net's gradient is the smoother one, against the paper."
    return said + " The ranges overlap: at this depth the seeds do not tell the two apart."


def correlation_chart(shatter: pd.DataFrame, height: int = 300) -> alt.LayerChart:
    """Neighbour correlation against depth, one line per variant, band from the lowest to
    the highest seed."""
    table = _spread(shatter, ["variant", "depth"], "correlation")
    base = alt.Chart(table, height=height).encode(
        x=alt.X(
            "depth:Q",
            title="layers",
            scale=alt.Scale(domain=[15, 115]),
            axis=alt.Axis(values=sorted(table["depth"].unique())),
        ),  # fmt: skip
        color=_colour(list(table["variant"])),
    )
    band = base.mark_area(opacity=0.15).encode(y="min:Q", y2="max:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title="neighbour correlation of the gradient"),
        tooltip=[
            "variant",
            "depth",
            alt.Tooltip("mean:Q", format=".3f"),
            alt.Tooltip("min:Q", format=".3f"),
            alt.Tooltip("max:Q", format=".3f"),
        ],  # fmt: skip
    )
    return band + line


def depth_sentence(shatter: pd.DataFrame) -> str:
    """How the correlation changes from the shallowest to the deepest nets, plain against
    residual, with the seed spread at the deepest."""
    table = _spread(shatter, ["variant", "depth", "residual"], "correlation")
    low, high = table["depth"].min(), table["depth"].max()
    at = table.set_index(["variant", "depth"])["mean"]
    deep = table[table["depth"] == high]
    plain, residual = deep[~deep["residual"]], deep[deep["residual"]]
    worst = residual.loc[residual["min"].idxmin()]
    best_plain = plain.loc[plain["max"].idxmax()]
    said = (
        f"From {low} to {high} layers the plain net's neighbour correlation goes from "
        f"{_num(at['plain', low])} to {_num(at['plain', high])}, ResNet's from "
        f"{_num(at['ResNet', low])} to {_num(at['ResNet', high])} (means of "
        f"{shatter['seed'].nunique()} seeds at init). At {high} layers the lowest seed of any "
        f"residual variant is {_num(worst['min'])} ({worst['variant']}); the highest of any "
        f"plain one {_num(best_plain['max'])} ({best_plain['variant']})."
    )
    if best_plain["max"] < worst["min"]:
        return said + " Every residual variant keeps its gradient smoother than every plain net."
    return said + " Not every residual variant stays above every plain net: see the chart."


# The pull toward the identity --------------------------------------------------------------
def _along_blocks(variance: pd.DataFrame, value: str, title: str, log: bool, height: int) -> alt.Chart:  # fmt: skip
    """`value` at each block, one line per variant (mean over seeds)."""
    table = _spread(variance, ["variant", "block"], value)
    scale = alt.Scale(type="log") if log else alt.Scale()
    return (
        alt.Chart(table, height=height)
        .mark_line()
        .encode(
            x=alt.X("block:Q", title="residual block (input side to output side)"),
            y=alt.Y("mean:Q", title=title, scale=scale),
            color=_colour(list(table["variant"])),
            tooltip=["variant", "block", alt.Tooltip("mean:Q", format=".3g")],
        )
    )


def variance_chart(variance: pd.DataFrame, height: int = 280) -> alt.Chart:
    """Branch variance over skip variance at each block, one line per variant."""
    return _along_blocks(variance, "ratio", "branch variance / skip variance", False, height)


def skip_chart(variance: pd.DataFrame, height: int = 280) -> alt.Chart:
    """The skip path's variance at each block (log scale), one line per variant."""
    return _along_blocks(variance, "skip", "variance of the skip path", True, height)


def variance_sentence(variance: pd.DataFrame) -> str:
    """What the ratio does along depth for BatchNorm, for the variants that start at 0, and
    how much the skip grows without normalisation."""
    table = _spread(variance, ["variant", "block"], "ratio").set_index(["variant", "block"])
    skip = _spread(variance, ["variant", "block"], "skip").set_index(["variant", "block"])
    variants = list(dict.fromkeys(variance["variant"]))
    last = int(variance["block"].max())
    seeds = variance["seed"].nunique()
    parts = [
        f"At init (mean of {seeds} seeds, {last} blocks), ResNet's branch variance relative "
        f"to its skip goes from {table.loc[('ResNet', 1), 'mean']:.2f} at block 1 to "
        f"{table.loc[('ResNet', last), 'mean']:.3f} at block {last}: each block is closer to "
        "the identity than the one before."
    ]
    zero = [v for v in variants if table.loc[v]["max"].max() == 0]
    if zero:
        names = ", ".join(zero[:-1]) + " and " + zero[-1] if len(zero) > 1 else zero[0]
        parts.append(f"With {names} the branch is exactly 0 at every block.")
    if "ResNet without norm" in variants:
        growth = skip.loc[("ResNet without norm", last), "mean"] / skip.loc[("ResNet without norm", 1), "mean"]  # fmt: skip
        ratio = table.loc["ResNet without norm"]["mean"]
        parts.append(
            f"Without normalisation the branch stays {ratio.min():.2g} to {ratio.max():.2g} "
            f"times the skip, so the signal grows {_fold(growth)} from block 1 to block {last}."
        )
    return " ".join(parts)


def _fold(ratio: float) -> str:
    """1e18 -> 'about 10^18-fold'; small ratios as `fmt_ratio` says them."""
    if ratio >= 1e6:
        return f"about 10^{math.log10(ratio):.0f}-fold"
    return fmt_ratio(ratio)


# Short paths -------------------------------------------------------------------------------
def effective_lengths(paths: pd.DataFrame, share: float = 0.9) -> tuple[int, int, float]:
    """The shortest range of path lengths (k_low, k_high) whose paths carry at least `share`
    of the total gradient, and the share they carry."""
    frame = paths.sort_values("k")
    ks, totals = frame["k"].tolist(), frame["total"].tolist()
    whole = sum(totals)
    best = (ks[0], ks[-1], 1.0)
    for i in range(len(ks)):
        carried = 0.0
        for j in range(i, len(ks)):
            carried += totals[j]
            if carried >= share * whole:
                if ks[j] - ks[i] < best[1] - best[0]:
                    best = (ks[i], ks[j], carried / whole)
                break
    return best


def paths_chart(paths: pd.DataFrame, net: str, height: int = 220) -> alt.HConcatChart:
    """For one net: how many paths have each length, the gradient of one path of that
    length (log scale), and their product (the gradient all paths of that length carry)."""
    frame = paths[paths["net"] == net].copy()
    frame["share of paths"] = frame["paths"] / frame["paths"].sum()
    frame["share of gradient"] = frame["total"] / frame["total"].sum()
    x = alt.X("k:Q", title="path length (branches passed)")

    def panel(field: str, title: str, mark: str = "bar", log: bool = False) -> alt.Chart:
        chart = alt.Chart(frame, height=height, width=230, title=title)
        chart = (
            chart.mark_bar(color=RESIDUAL_COLOUR)
            if mark == "bar"
            else chart.mark_line(point=True, color=RESIDUAL_COLOUR)
        )
        y = alt.Y(f"{field}:Q", title=None, scale=alt.Scale(type="log" if log else "linear"))
        return chart.encode(x=x, y=y, tooltip=["k", alt.Tooltip(f"{field}:Q", format=".3g")])

    return alt.hconcat(
        panel("share of paths", "a. share of all paths"),
        panel("gradient", "b. gradient of one path", mark="line", log=True),
        panel("share of gradient", "c. a x b: share of the gradient"),
    )


def per_branch(paths: pd.DataFrame) -> float:
    """The factor by which one path's gradient changes per branch it passes (a fit of log
    gradient against k over the measured lengths)."""
    frame = paths[paths["gradient"] > 0]
    k, log_g = frame["k"].astype(float), frame["gradient"].map(math.log)
    slope = ((k - k.mean()) * (log_g - log_g.mean())).sum() / ((k - k.mean()) ** 2).sum()
    return math.exp(slope)


def paths_sentence(paths: pd.DataFrame, net: str) -> str:
    """Where one net's gradient comes from: the change per branch, the peak and the range
    of lengths that carry 90 % of it."""
    frame = paths[paths["net"] == net].sort_values("k")
    n = int(frame["blocks"].iloc[0])
    factor = per_branch(frame)
    change = (
        f"shrinks about {fmt_ratio(1 / factor)} with each branch it passes"
        if factor < 1
        else f"grows about {fmt_ratio(factor)} with each branch it passes"
    )
    low, high, carried = effective_lengths(frame)
    peak = int(frame.loc[frame["total"].idxmax(), "k"])
    said = (
        f"{net}: {n} blocks make 2^{n} paths, most of them about {n // 2} branches long, but "
        f"the gradient of one path {change}. Paths of {low} to {high} branches carry "
        f"{100 * carried:.0f} % of the gradient, the most at {peak} (one net, "
        "a few sampled paths per length)."
    )
    if high < n / 2:
        said += " The gradient comes from paths shorter than the typical one."
    return said


# The variants trained ------------------------------------------------------------------------
CHANCE = 0.10  # ten classes
TRAINED_ABOVE = 0.15  # best test accuracy below this: the net did not leave chance


def training_chart(steps: pd.DataFrame, span: int = 10, height: int = 320) -> alt.Chart:
    """Training loss against step, one line per variant (a rolling mean over `span` logged
    steps)."""
    frame = steps.copy()
    frame["loss"] = frame.groupby("variant")["loss"].transform(
        lambda loss: loss.rolling(span, min_periods=1).mean()
    )
    return (
        alt.Chart(frame, height=height)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="step (same batches for every net)"),
            y=alt.Y(
                "loss:Q", title=f"training loss (mean of {span} steps)", scale=alt.Scale(zero=False)
            ),  # fmt: skip
            color=_colour(list(frame["variant"])),
            tooltip=["variant", "step", alt.Tooltip("loss:Q", format=".3f")],
        )
    )


def training_table(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the last epoch's training loss and the best test accuracy (%), best first."""
    last = epochs.sort_values("epoch").groupby("variant", sort=False).tail(1).set_index("variant")
    best = epochs.groupby("variant", sort=False)["test_acc"].max()
    table = pd.DataFrame(
        {
            "final training loss": last["train_loss"].round(3),
            "best test accuracy (%)": (100 * best).round(1),
        }  # fmt: skip
    )
    return table.sort_values("best test accuracy (%)", ascending=False).reset_index()


def training_sentence(epochs: pd.DataFrame, record: dict) -> str:
    """What the short runs show, variant by variant, and where it differs from the papers."""
    table = training_table(epochs).set_index("variant")
    accuracy = table["best test accuracy (%)"]
    recipe = record.get("recipe", {})
    data = f"{recipe['subset']:,} images" if recipe.get("subset") else "all 50,000 images"
    ranking = ", ".join(f"{variant} {value:.1f} %" for variant, value in accuracy.items())
    said = [
        f"{int(epochs['epoch'].max())} epochs on {data}, one run each on the same batches. "
        f"Best test accuracy: {ranking}."
    ]
    stuck = [v for v, value in accuracy.items() if value < 100 * TRAINED_ABOVE]
    if stuck:
        said.append(f"Near chance ({100 * CHANCE:.0f} %): {' and '.join(stuck)}.")
    if {"plain", "ResNet"} <= set(accuracy.index):
        verdict = (
            "as He et al. found" if accuracy["ResNet"] > accuracy["plain"] else "against He et al."
        )
        said.append(
            f"ResNet is {abs(accuracy['ResNet'] - accuracy['plain']):.1f} points "
            f"{'above' if accuracy['ResNet'] > accuracy['plain'] else 'below'} plain at 56 layers, {verdict}."  # fmt: skip
        )
    bare = [v for v in ("SkipInit", "Fixup") if v in accuracy.index]
    if bare and "plain without norm" in accuracy.index:
        trained = [v for v in bare if accuracy[v] > accuracy["plain without norm"]]
        said.append(
            f"Without any normalisation, {' and '.join(trained) or 'neither SkipInit nor Fixup'} "
            f"{'beat' if trained else 'beats'} the plain net without it "
            f"({accuracy['plain without norm']:.1f} %): "
            + (
                "the initialisation is what lets them train, as the papers say."
                if trained
                else "against the papers."
            )  # fmt: skip
        )
    behind = _behind_resnet(accuracy)
    if behind:
        said.append(behind)
    return " ".join(said)


def _behind_resnet(accuracy: pd.Series, margin: float = 5.0) -> str:
    """The residual variants more than `margin` points below ResNet with BatchNorm: the
    papers report them on par after full training."""
    if "ResNet" not in accuracy.index:
        return ""
    others = [
        v for v in ("pre-activation", "zero-init", "SkipInit", "Fixup") if v in accuracy.index
    ]
    gaps = {v: accuracy["ResNet"] - accuracy[v] for v in others}
    gaps = {v: gap for v, gap in gaps.items() if gap > margin}
    if not gaps:
        return ""
    return (
        f"In these short runs {', '.join(gaps)} trail ResNet by {min(gaps.values()):.1f} to "
        f"{max(gaps.values()):.1f} points, where the papers find them on par after full "
        "training: this shows early training only, one seed each."
    )
