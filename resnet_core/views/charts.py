"""Altair chart builders shared by the app's pages, a large-font theme, and exporters.

Every builder takes plain DataFrames (the ones `resnet_core` probes and runs produce) and
returns an `alt.Chart`; `themed` applies the normal or projector-sized fonts to any chart,
and `to_png` / `to_svg` / `to_csv` turn charts and tables into downloadable bytes
(vl-convert renders Vega-Lite without a browser).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

from resnet_core.training.events import EpochEnd, Event, Step, parse_event

__all__ = [
    "theme_config",
    "themed",
    "to_png",
    "to_svg",
    "to_csv",
    "layer_norms_chart",
    "shape_profile_chart",
    "step_chart",
    "epoch_chart",
    "per_layer_long",
    "metrics_frames",
]


# Colours that stay distinct on a washed-out projector: plain nets warm, residual nets cool.
PLAIN_COLOUR = "#d62728"
RESIDUAL_COLOUR = "#1f77b4"


def theme_config(large: bool = False) -> dict[str, Any]:
    """Vega-Lite `config` for normal screens or (large=True) a projector at the back of a room."""
    label, title, heading = (18, 20, 24) if large else (12, 13, 15)
    stroke = 4 if large else 2
    return {
        "axis": {"labelFontSize": label, "titleFontSize": title, "titlePadding": 8},
        "legend": {
            "labelFontSize": label,
            "titleFontSize": title,
            "symbolSize": 140 if large else 80,
            "labelLimit": 400,
        },
        "header": {"labelFontSize": label, "titleFontSize": title},
        "title": {"fontSize": heading, "anchor": "start"},
        "line": {"strokeWidth": stroke},
        "point": {"size": 90 if large else 40},
        "text": {"fontSize": label},
    }


def themed(chart: alt.TopLevelMixin, large: bool = False) -> alt.TopLevelMixin:
    """The chart with the app's fonts applied (per chart, so one user's choice is theirs alone)."""
    config = theme_config(large)
    if large and isinstance(chart, alt.Chart) and isinstance(chart.height, int):
        chart = chart.properties(height=int(chart.height * 1.5))  # room for the bigger labels
    return (
        chart.configure_axis(**config["axis"])
        .configure_legend(**config["legend"])
        .configure_title(**config["title"])
        .configure_header(**config["header"])
        .configure_line(**config["line"])
        .configure_point(**config["point"])
    )


def to_png(chart: alt.TopLevelMixin, scale: float = 2.0) -> bytes:
    """PNG bytes of a chart (scale 2 stays sharp on slides)."""
    import vl_convert as vlc  # imported here: only exports need the renderer

    return vlc.vegalite_to_png(chart.to_json(), scale=scale)


def to_svg(chart: alt.TopLevelMixin) -> str:
    """SVG text of a chart."""
    import vl_convert as vlc  # imported here: only exports need the renderer

    return vlc.vegalite_to_svg(chart.to_json())


def to_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV of a table; list cells (shapes) are written as 1x16x32x32."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, (list, tuple))).any():
            frame[column] = frame[column].map(
                lambda v: "x".join(str(x) for x in v) if isinstance(v, (list, tuple)) else v
            )
    return frame.to_csv(index=False).encode("utf-8")


def _colour_scale(names: list[str], residual: dict[str, bool] | None) -> alt.Scale:
    if residual and len(names) == 2 and set(residual.values()) == {True, False}:
        return alt.Scale(
            domain=names, range=[RESIDUAL_COLOUR if residual[n] else PLAIN_COLOUR for n in names]
        )
    return alt.Scale(domain=names)


def layer_norms_chart(
    frame: pd.DataFrame,
    value: str,
    title: str,
    value_title: str,
    log: bool = True,
    residual: dict[str, bool] | None = None,
    height: int = 320,
) -> alt.Chart:
    """Lines of one per-layer quantity (gradient norm, response std) for one or more nets.

    Args:
        frame: long table with columns net, position (0..1 from input to output), layer, value.
        value: the column to plot.
        title: chart title.
        value_title: y-axis title.
        log: log-scale y (gradient norms span orders of magnitude).
        residual: net name -> whether it has skips, to colour plain red and residual blue.
    """
    names = list(dict.fromkeys(frame["net"]))
    y_scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    return (
        alt.Chart(frame, title=title, height=height)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "position:Q",
                title="depth (0 = input end, 1 = output end)",
                scale=alt.Scale(domain=[0, 1]),
            ),
            y=alt.Y(f"{value}:Q", title=value_title, scale=y_scale),
            color=alt.Color(
                "net:N",
                title="network",
                scale=_colour_scale(names, residual),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=["net", "layer", alt.Tooltip(f"{value}:Q", format=".3g")],
        )
    )


def shape_profile_chart(frame: pd.DataFrame, height: int = 260) -> alt.Chart:
    """Channels and spatial side along depth, one small chart each (steps where they change).

    Args:
        frame: columns position (layer number), layer, channels, side.
    """
    base = alt.Chart(frame, height=height).encode(
        x=alt.X("position:Q", title="layer number (forward order)"),
        tooltip=["layer", "channels", "side"],
    )
    channels = (
        base.mark_line(interpolate="step-after", color=RESIDUAL_COLOUR)
        .encode(y=alt.Y("channels:Q", title="channels"))
        .properties(title="Channels grow ...")
    )
    side = (
        base.mark_line(interpolate="step-after", color=PLAIN_COLOUR)
        .encode(
            y=alt.Y("side:Q", title="height = width (pixels)", scale=alt.Scale(type="log", base=2))
        )
        .properties(title="... while the picture shrinks")
    )
    return alt.hconcat(channels, side).resolve_scale(y="independent")


def step_chart(
    frame: pd.DataFrame,
    value: str,
    title: str,
    value_title: str,
    log: bool = False,
    height: int = 260,
) -> alt.Chart:
    """A per-step curve (loss, learning rate, images/s), coloured by run when there are several.

    Args:
        frame: columns step, value and (optionally) run.
    """
    encoding: dict[str, Any] = {
        "x": alt.X("step:Q", title="step", axis=alt.Axis(format="d", tickMinStep=1)),
        "y": alt.Y(
            f"{value}:Q",
            title=value_title,
            scale=alt.Scale(type="log") if log else alt.Scale(zero=False),
        ),
        "tooltip": ["step", alt.Tooltip(f"{value}:Q", format=".4g")],
    }
    if "run" in frame.columns and frame["run"].nunique() > 1:
        encoding["color"] = alt.Color("run:N", legend=alt.Legend(orient="top"))
    return alt.Chart(frame, title=title, height=height).mark_line().encode(**encoding)


def epoch_chart(
    frame: pd.DataFrame, title: str = "Accuracy per epoch", height: int = 260
) -> alt.Chart:
    """Train and test accuracy (percent) per epoch; colour = split, dash = run if several.

    Args:
        frame: long table with columns epoch, split ("train" | "test"), accuracy, optional run.
    """
    encoding: dict[str, Any] = {
        "x": alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
        "y": alt.Y("accuracy:Q", title="accuracy (%)", scale=alt.Scale(domain=[0, 100])),
        "color": alt.Color("split:N", title="split", legend=alt.Legend(orient="top")),
        "tooltip": ["epoch", "split", alt.Tooltip("accuracy:Q", format=".2f")],
    }
    if "run" in frame.columns and frame["run"].nunique() > 1:
        encoding["strokeDash"] = alt.StrokeDash("run:N", legend=alt.Legend(orient="top"))
        encoding["tooltip"] = ["run", *encoding["tooltip"]]
    return alt.Chart(frame, title=title, height=height).mark_line(point=True).encode(**encoding)


def per_layer_long(frames: dict[str, pd.DataFrame], value: str) -> pd.DataFrame:
    """Stack per-layer frames of several nets into the long table `layer_norms_chart` reads.

    Each net's rows get `position` from 0 (first layer) to 1 (last), so nets of different
    depths share one x axis.
    """
    parts = []
    for name, frame in frames.items():
        part = frame[["layer", value]].copy().reset_index(drop=True)
        part.insert(0, "net", name)
        part["position"] = part.index / max(len(part) - 1, 1)
        parts.append(part)
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["net", "layer", value, "position"])
    )


def _percent(values: pd.Series) -> pd.Series:
    """Accuracies as percentages, whether they were logged as fractions or percents."""
    return values * 100 if len(values) and values.max() <= 1.0 else values


def metrics_frames(events: Sequence[Event | dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a run's events (typed, or metrics.jsonl records) into a per-step table and a
    long per-epoch accuracy table; records that are not valid events are left out.

    Returns:
        (steps with columns step, epoch, loss, lr, images_per_s, eta_s where logged;
         epochs with columns epoch, split ("train" | "test"), accuracy in percent)
    """
    typed = [e if isinstance(e, Event) else parse_event(e) for e in events]
    steps = pd.DataFrame([e.to_dict() for e in typed if isinstance(e, Step)])
    epochs = pd.DataFrame([e.to_dict() for e in typed if isinstance(e, EpochEnd)])
    parts = []
    for split in ("train", "test"):
        column = f"{split}_acc"
        if column in epochs.columns:
            part = epochs[["epoch", column]].dropna().rename(columns={column: "accuracy"})
            part["accuracy"] = _percent(part["accuracy"].astype(float))
            part.insert(1, "split", split)
            parts.append(part)
    long = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["epoch", "split", "accuracy"])
    )
    return steps, long
