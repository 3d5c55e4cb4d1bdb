"""The lecture's charts: each slide's figure drawn from the tables `views.lecture` reads
from the shipped results; the page only places them."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from resnet_core.views.charts import PLAIN_COLOUR, RESIDUAL_COLOUR

__all__ = ["error_chart", "results_chart", "comparison_chart", "weight_decay_chart", "fig6_chart"]


def error_chart(curves: pd.DataFrame, family: str) -> alt.Chart:
    """Training (solid) and test (dashed) error per epoch; both families share one y scale."""
    part = curves[(curves["family"] == family)]
    colour = PLAIN_COLOUR if family == "plain" else RESIDUAL_COLOUR
    top = 10 * math.ceil(curves["error"].max() / 10)
    return (
        alt.Chart(part, title=f"{family} nets", height=300)
        .mark_line(color=colour, clip=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("error:Q", title="error (%)", scale=alt.Scale(domain=[0, top])),
            strokeDash=alt.StrokeDash(
                "split:N", sort=["train", "test"], legend=alt.Legend(orient="bottom")
            ),
            strokeWidth=alt.StrokeWidth(
                "run:N", legend=alt.Legend(orient="bottom"), scale=alt.Scale(range=[1.5, 4])
            ),
            tooltip=["run", "epoch", "split", alt.Tooltip("error:Q", format=".2f")],
        )
    )


def results_chart(long: pd.DataFrame, networks: list[str]) -> alt.Chart:
    """Our test error beside He et al.'s Table 6, a pair of bars per network."""
    return (
        alt.Chart(long, title="CIFAR-10 test error (%)", height=380)
        .mark_bar()
        .encode(
            x=alt.X("network:N", title=None, sort=networks),
            xOffset=alt.XOffset("source:N", sort=["ours", "He et al."]),
            y=alt.Y("error:Q", title="test error (%)"),
            color=alt.Color(
                "source:N", sort=["ours", "He et al."], legend=alt.Legend(orient="top")
            ),
            tooltip=["network", "source", alt.Tooltip("error:Q", format=".2f")],
        )
    )


def comparison_chart(comparison: pd.DataFrame) -> alt.Chart:
    """Best test accuracy per network, one bar each."""
    return (
        alt.Chart(comparison, title="Best test accuracy (%)", height=340)
        .mark_bar()
        .encode(
            x=alt.X("best test accuracy (%):Q", scale=alt.Scale(domain=[0, 100])),
            y=alt.Y("network:N", title=None),
            color=alt.value(RESIDUAL_COLOUR),
            tooltip=list(comparison.columns),
        )
    )


def weight_decay_chart(gap: pd.DataFrame) -> alt.Chart:
    """Train minus test accuracy per epoch, a colour per weight decay (a line per seed)."""
    seeds = {"detail": "run:N"} if "setting" in gap else {}
    return (
        alt.Chart(gap, height=380, title="Train accuracy minus test accuracy, per epoch")
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("gap:Q", title="gap (percentage points)"),
            color=alt.Color(
                f"{'setting' if seeds else 'run'}:N",
                title="weight decay",
                legend=alt.Legend(orient="top"),
            ),
            **seeds,
            tooltip=[
                "run",
                "epoch",
                alt.Tooltip("gap:Q", format=".2f"),
                alt.Tooltip("test:Q", format=".2f"),
            ],
        )
    )


def fig6_chart(curves: pd.DataFrame, family: str) -> alt.Chart:
    """He et al. Fig. 6 from our files: error per epoch of one family, a colour per depth,
    training dashed and test solid; both families share one y scale."""
    part = curves[curves["family"] == family]
    runs = list(part.drop_duplicates("run")["run"])
    last = curves[curves["epoch"] == curves.groupby("run")["epoch"].transform("max")]
    top = min(100, max(10, 10 * math.ceil(1.5 * last["error"].max() / 10)))
    base = PLAIN_COLOUR if family == "plain" else RESIDUAL_COLOUR
    shades = [_shade(base, i / max(len(runs) - 1, 1)) for i in range(len(runs))]
    names = {"plain": "plain nets", "residual": "ResNets"}
    return (
        alt.Chart(part, title=names[family], height=420)
        .mark_line(clip=True, strokeWidth=2.5)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("error:Q", title="error (%)", scale=alt.Scale(domain=[0, top])),
            color=alt.Color(
                "run:N",
                sort=runs,
                scale=alt.Scale(domain=runs, range=shades),
                legend=alt.Legend(orient="bottom", title=None, columns=3),
            ),
            strokeDash=alt.StrokeDash(
                "split:N",
                sort=["train", "test"],
                scale=alt.Scale(domain=["train", "test"], range=[[6, 3], [1, 0]]),
                legend=alt.Legend(orient="top", title=None, direction="horizontal"),
            ),
            tooltip=["run", "epoch", "split", alt.Tooltip("error:Q", format=".2f")],
        )
    )


def _shade(colour: str, darkness: float) -> str:
    """`colour` (#rrggbb) mixed with white, from light (0) to the full colour (1)."""
    mix = 0.35 + 0.65 * darkness
    channels = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - mix * (255 - c)):02x}" for c in channels)
