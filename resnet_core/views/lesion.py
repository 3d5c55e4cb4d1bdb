"""What the Lesions page shows of a lesion study (Veit et al. 2016,
https://arxiv.org/abs/1605.06431): its charts and the sentences computed from its numbers.

The study itself (running it, its tables, its files) is `resnet_core.studies.lesion`.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from resnet_core.studies.lesion import random_summary, single_summary
from resnet_core.views.charts import PLAIN_COLOUR, RESIDUAL_COLOUR

__all__ = [
    "ONE_RUN",
    "single_story",
    "random_story",
    "single_chart",
    "paired_chart",
    "random_chart",
    "depth_pairs",
]

ONE_RUN = (
    "Each net is one trained run: how much this varies between training seeds is not measured."
)
NEAR_CHANCE = 10.0  # points above chance that still read as "near chance"
GREY = "#555555"
INK = "#222222"


# Numbers and sentences --------------------------------------------------------------------
def _chance(frame: pd.DataFrame) -> float:
    """Chance accuracy in percent (10 % for CIFAR-10's ten classes)."""
    return 10.0 if "classes" not in frame else 100.0 / float(frame["classes"].iloc[0])


def _ordered(nets: Sequence[str], residual: dict[str, bool]) -> list[str]:
    """Residual nets first: the sentence leads with the claim, then the contrast."""
    return sorted(nets, key=lambda net: not residual.get(net, False))


def _single_sentence(row: pd.Series, chance: float) -> str:
    net = row["net"]
    if row["deletable"] == 0:
        return f"No block of {net} can be deleted without changing a shape."
    kept = row["blocks"] - row["deletable"]
    tail = (
        f" ({kept} block{'s' if kept > 1 else ''} at a stage change cannot be deleted)"
        if kept
        else ""
    )
    if row["mean_accuracy"] <= chance + NEAR_CHANCE:
        return (
            f"For {net} one deletion leaves {row['mean_accuracy']:.0f} % on average, near chance "
            f"({chance:.0f} %), down from {row['intact']:.0f} %{tail}."
        )
    return (
        f"Deleting one block of {net} costs {row['mean_drop']:.1f} points on average (worst: "
        f"block {row['worst_block']}, {row['worst_drop']:.0f} points; intact "
        f"{row['intact']:.1f} %){tail}."
    )


def single_story(frame: pd.DataFrame) -> str:
    """One sentence per net about its single deletions, residual nets first."""
    summary = single_summary(frame)
    if summary.empty:
        return ""
    rows = summary.set_index("net", drop=False)
    order = _ordered(list(rows.index), dict(zip(rows["net"], rows["residual"])))
    sentences = [_single_sentence(rows.loc[net], _chance(frame)) for net in order]
    return " ".join([*sentences, ONE_RUN])


def _spoken_list(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _random_sentence(group: pd.DataFrame, chance: float) -> str:
    net, most = group["net"].iloc[0], int(group["k"].max())
    at = group.set_index("k")["mean"]
    picks = sorted({k for k in (1, max(1, most // 4), max(1, most // 2)) if k in at.index})
    if not picks:
        return ""
    counts = _spoken_list([str(k) for k in picks])
    rows = group.set_index("k")
    accuracies = _spoken_list(
        [f"{at[k]:.0f} % ({rows.at[k, 'low']:.0f}-{rows.at[k, 'high']:.0f})" for k in picks]
    )
    draws = int(group.loc[group["k"] > 0, "draws"].max())
    near = group[(group["k"] > 0) & (group["mean"] <= chance + 5)]
    tail = f"; within 5 points of chance from {int(near['k'].min())} on" if len(near) else ""
    return (
        f"{net} with {counts} of its {most} deletable blocks deleted at random: {accuracies} "
        f"right ({_draws_phrase(draws)}){tail}."
    )


def _draws_phrase(draws: int) -> str:
    return f"mean and range of {draws} draws" if draws > 1 else "one draw"


def random_story(frame: pd.DataFrame) -> str:
    """One sentence per net about k random deletions, residual nets first."""
    summary = random_summary(frame)
    if summary.empty or summary["k"].max() < 1:
        return ""
    residual = dict(zip(summary["net"], summary["residual"]))
    groups = dict(tuple(summary.groupby("net", sort=False)))
    chance = _chance(frame)
    return " ".join(
        _random_sentence(groups[net], chance) for net in _ordered(list(groups), residual)
    )


# Charts -----------------------------------------------------------------------------------
def _colour(residual: bool) -> str:
    return RESIDUAL_COLOUR if residual else PLAIN_COLOUR


def _label_size(large: bool) -> int:
    return 18 if large else 13


def _rule(value: float, dash: list[int], label: str = "", large: bool = False) -> alt.Chart:
    """A horizontal line, labelled inside the plot at its right end, just above the line
    (where bars at most reach it: the intact accuracy). Without a label, the line alone."""
    data = pd.DataFrame({"y": [value], "label": [label]})
    base = alt.Chart(data).encode(y="y:Q")
    rule = base.mark_rule(color=INK, strokeDash=dash, strokeWidth=2)
    if not label:
        return rule
    text = base.mark_text(
        align="right", baseline="bottom", dx=-4, dy=-4, fontSize=_label_size(large),
        fontWeight="bold", color=INK,
    ).encode(x=alt.value("width"), text="label:N")  # fmt: skip
    return rule + text


def _net_bars(
    frame: pd.DataFrame, chance: float, large: bool, height: int | None = None
) -> alt.LayerChart:
    """Bars of one net: accuracy with each block deleted; blocks that cannot go are a grey
    column that says so. The intact net is a labelled dashed line; chance, a dotted line
    named in the subtitle (bars of a plain net sit on it, so a label there would be hidden)."""
    net, residual = frame["net"].iloc[0], bool(frame["residual"].iloc[0])
    data = frame.assign(percent=100 * frame["accuracy"], label=frame["block"].astype(str))
    kind = "residual" if residual else "plain"
    intact = 100 * float(frame["intact"].iloc[0])
    title = alt.Title(
        f"{net} ({kind}): accuracy with one block deleted",
        subtitle=f"dashed: the intact net ({intact:.1f} %); dotted: chance ({chance:.0f} %)",
        subtitleFontSize=_label_size(large),
    )
    x = alt.X(
        "label:N",
        sort=list(data["label"]),
        title="deleted block (stage.block)",
        axis=alt.Axis(labelAngle=0, labelFontWeight="bold"),
    )
    base = alt.Chart(data, title=title).encode(x=x)
    y = alt.Y("percent:Q", title="test accuracy (%)", scale=alt.Scale(domain=[0, 100]))
    bars = base.mark_bar(color=_colour(residual)).encode(
        y=y,
        tooltip=[
            alt.Tooltip("label:N", title="deleted block"),
            alt.Tooltip("percent:Q", title="accuracy (%)", format=".1f"),
            alt.Tooltip("drop:Q", title="drop (points)", format=".1f"),
            alt.Tooltip("replaced_by:N", title="replaced by"),
        ],
    )
    kept = base.transform_filter(~alt.datum.deletable)
    column = kept.mark_bar(color="#ececec").encode(y=alt.datum(0), y2=alt.datum(100))
    words = kept.mark_text(
        angle=270, align="center", baseline="middle", color=GREY, fontSize=_label_size(large)
    ).encode(y=alt.datum(35), text=alt.value("cannot delete"))
    layers = alt.layer(
        column,
        bars,
        _rule(intact, [8, 4], f"intact {intact:.1f} %", large),
        _rule(chance, [2, 3]),
        words,
    )
    height = height or (300 if large else 220)
    return layers.properties(width=alt.Step(40 if large else 32), height=height)


def single_chart(
    frame: pd.DataFrame, large: bool = False, height: int | None = None
) -> alt.VConcatChart:
    """One bar chart per net (plain first, residual below, same scale): the test accuracy
    with each block deleted on its own, the intact accuracy and chance as lines; `height`
    of each (default by `large`)."""
    chance = _chance(frame)
    nets = list(dict.fromkeys(frame["net"]))
    residual = dict(zip(frame["net"], frame["residual"].astype(bool)))
    order = sorted(nets, key=lambda net: residual[net])  # plain above residual
    charts = [_net_bars(frame[frame["net"] == net], chance, large, height) for net in order]
    return alt.vconcat(*charts, spacing=36 if large else 28)


def paired_chart(frame: pd.DataFrame, height: int = 320) -> alt.LayerChart:
    """Both nets in one bar chart for a slide: per block, the accuracy with it deleted,
    plain and residual side by side in their colours; each intact accuracy a dashed line in
    its net's colour, chance dotted. Blocks that cannot go have no bar."""
    chance = _chance(frame)
    data = frame.assign(percent=100 * frame["accuracy"], label=frame["block"].astype(str))
    nets = sorted(dict.fromkeys(data["net"]), key=lambda n: bool(data.loc[data["net"] == n, "residual"].iloc[0]))  # fmt: skip
    residual = {n: bool(data.loc[data["net"] == n, "residual"].iloc[0]) for n in nets}
    colour = alt.Color("net:N", scale=alt.Scale(domain=nets, range=[_colour(residual[n]) for n in nets]), sort=nets)  # fmt: skip
    x = alt.X("label:N", sort=list(dict.fromkeys(data["label"])), title="deleted block (stage.block)", axis=alt.Axis(labelAngle=0))  # fmt: skip
    y = alt.Y("percent:Q", title="test accuracy (%)", scale=alt.Scale(domain=[0, 100]))
    bars = alt.Chart(data[data["deletable"]]).mark_bar().encode(x=x, xOffset=alt.XOffset("net:N", sort=nets), y=y, color=colour)  # fmt: skip
    intact = data.drop_duplicates("net").assign(intact=lambda f: 100 * f["intact"])
    lines = alt.Chart(intact).mark_rule(strokeDash=[8, 4], strokeWidth=2).encode(y="intact:Q", color=colour)  # fmt: skip
    title = alt.Title(
        "Accuracy with one block deleted",
        subtitle=f"dashed: each net intact; dotted: chance ({chance:.0f} %)",
        subtitleFontSize=_label_size(True),
    )
    return alt.layer(bars, lines, _rule(chance, [2, 3])).properties(title=title, height=height)


def random_chart(frame: pd.DataFrame, large: bool = False) -> alt.LayerChart:
    """Mean accuracy against the number of blocks deleted at random, one line per net, with
    the range of the draws as a band and chance as a dotted line."""
    summary = random_summary(frame)
    nets = list(dict.fromkeys(summary["net"]))
    residual = dict(zip(summary["net"], summary["residual"].astype(bool)))
    scale = alt.Scale(domain=nets, range=[_colour(residual[net]) for net in nets])
    legend = alt.Legend(title="net", symbolOpacity=1, symbolType="stroke", symbolStrokeWidth=4)
    base = alt.Chart(summary, title="Accuracy with k blocks deleted at random").encode(
        x=alt.X(
            "k:Q",
            title="blocks deleted at random (k)",
            axis=alt.Axis(tickMinStep=1),
            scale=alt.Scale(domain=[0, int(summary["k"].max())], nice=False),
        ),
        color=alt.Color("net:N", scale=scale, legend=legend),
    )
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q"), y2="high:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title="test accuracy (%)", scale=alt.Scale(domain=[0, 100])),
        tooltip=[
            "net:N",
            "k:Q",
            alt.Tooltip("mean:Q", title="mean (%)", format=".1f"),
            alt.Tooltip("low:Q", title="lowest draw (%)", format=".1f"),
            alt.Tooltip("high:Q", title="highest draw (%)", format=".1f"),
            alt.Tooltip("draws:Q", title="draws"),
        ],
    )
    chance = _chance(frame)
    label = (
        alt.Chart(pd.DataFrame({"y": [chance], "label": [f"chance {chance:.0f} %"]}))
        .mark_text(
            align="left", baseline="top", dx=4, dy=4, fontSize=_label_size(large),
            fontWeight="bold", color=INK,
        )
        .encode(x=alt.value(0), y="y:Q", text="label:N")
    )  # fmt: skip
    return (band + line + _rule(chance, [2, 3]) + label).properties(height=360 if large else 280)


# Choosing what to show ------------------------------------------------------------------------
def depth_pairs(nets: Sequence[str]) -> dict[str, list[str]]:
    """Nets grouped by the depth in their names, in order of appearance: {"20 layers":
    ["plain20", "resnet20"], "56 layers": [...]}, so a plain net is shown beside its twin."""
    groups: dict[str, list[str]] = {}
    for net in nets:
        digits = "".join(char for char in net if char.isdigit())
        groups.setdefault(f"{digits} layers" if digits else net, []).append(net)
    return groups
