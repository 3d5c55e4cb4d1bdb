"""Charts of several nets' runs (a lockstep group, or runs picked to compare): every net's
curve on one chart per metric, plain nets in reds and residual nets in blues, as everywhere
else in the app."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import altair as alt
import pandas as pd

from resnet_core.training.events import EpochEnd, Event, GradNorms, Step, parse_event
from resnet_core.training.gap import Gap, demo_pairs, gap_opened
from resnet_core.views.charts import PLAIN_COLOUR, RESIDUAL_COLOUR

INK = "#222222"  # marks on a chart

__all__ = [
    "layer_grad_frame",
    "layer_grad_heatmap",
    "LockstepFrames",
    "lockstep_chart",
    "lockstep_frames",
    "lockstep_sentence",
    "barely_trained_sentence",
    "twin_sentence",
    "demo_gaps",
    "gap_sentence",
    "net_colours",
    "MetricChart",
    "METRIC_CHARTS",
    "GROUP_METRICS",
    "COMPARE_METRICS",
    "SMOOTH_STEPS",
]

SMOOTH_STEPS = 10  # batch accuracy is shown as a running mean over this many logged points
PLAIN_SHADES = (PLAIN_COLOUR, "#ff7f0e", "#8c564b", "#e377c2")
RESIDUAL_SHADES = (RESIDUAL_COLOUR, "#17becf", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class MetricChart:
    """One chart of several nets' curves: the LockstepFrames table it reads (steps, epochs,
    grads), its x ("step" or "epoch"), the value column, the title and the value axis."""

    table: str
    x: str
    value: str
    title: str
    axis: str
    log: bool = False


# Every metric a multi-net chart can show, once; the Train page and Runs pick from it.
METRIC_CHARTS: dict[str, MetricChart] = {
    chart.value: chart
    for chart in (
        MetricChart("steps", "step", "loss", "Training loss", "loss"),
        MetricChart("steps", "step", "accuracy", "Training accuracy", "accuracy (%)"),
        MetricChart("epochs", "epoch", "train_acc", "Training accuracy per epoch", "accuracy (%)"),
        MetricChart("epochs", "epoch", "test_acc", "Test accuracy", "accuracy (%)"),
        MetricChart("epochs", "epoch", "test_loss", "Test loss", "loss"),
        MetricChart(
            "grads", "step", "ratio", "Gradient: first layer / last layer", "ratio (log)", True
        ),
    )
}
GROUP_METRICS = ("loss", "accuracy", "test_acc", "ratio")  # a lockstep group, live
COMPARE_METRICS = ("loss", "train_acc", "test_acc", "test_loss")  # finished runs side by side


@dataclass(frozen=True)
class LockstepFrames:
    """Long tables, one row per net and point.

    Attributes:
        steps: net, step, loss, accuracy (percent, running mean over SMOOTH_STEPS).
        epochs: net, epoch, train_acc, test_acc (percent), train_loss, test_loss.
        grads: net, step, ratio (first conv's gradient norm over the last conv's).
    """

    steps: pd.DataFrame
    epochs: pd.DataFrame
    grads: pd.DataFrame


def _typed(events: Sequence[Event | dict]) -> list[Event]:
    typed = (e if isinstance(e, Event) else parse_event(e) for e in events)
    return [e for e in typed if e is not None]


def _step_rows(net: str, events: list[Event]) -> pd.DataFrame:
    rows = [
        {"net": net, "step": e.step, "loss": e.loss, "accuracy": e.accuracy, "elapsed": e.elapsed}
        for e in events
        if isinstance(e, Step)
    ]
    frame = pd.DataFrame(rows, columns=["net", "step", "loss", "accuracy", "elapsed"])
    accuracy = pd.to_numeric(frame["accuracy"], errors="coerce") * 100
    frame["accuracy"] = accuracy.rolling(SMOOTH_STEPS, min_periods=1).mean()
    return frame


def _epoch_rows(net: str, events: list[Event]) -> pd.DataFrame:
    columns = ["train_acc", "test_acc", "train_loss", "test_loss"]
    rows = [
        {"net": net, "epoch": e.epoch, **{name: getattr(e, name) for name in columns}}
        for e in events
        if isinstance(e, EpochEnd)
    ]
    frame = pd.DataFrame(rows, columns=["net", "epoch", *columns])
    for name in ("train_acc", "test_acc"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce") * 100
    return frame


def _grad_rows(net: str, events: list[Event]) -> pd.DataFrame:
    rows = []
    for e in events:
        if not isinstance(e, GradNorms):
            continue
        convs = [row["grad_norm"] for row in e.rows if row.get("kind") == "conv"]
        if len(convs) >= 2 and convs[-1] > 0:
            rows.append({"net": net, "step": e.step, "ratio": convs[0] / convs[-1]})
    return pd.DataFrame(rows, columns=["net", "step", "ratio"])


def lockstep_frames(events_by_net: Mapping[str, Sequence[Event | dict]]) -> LockstepFrames:
    """The group's curves from each member's events (typed, or metrics.jsonl records)."""
    typed = {net: _typed(events) for net, events in events_by_net.items()}
    return LockstepFrames(
        steps=pd.concat([_step_rows(n, e) for n, e in typed.items()], ignore_index=True),
        epochs=pd.concat([_epoch_rows(n, e) for n, e in typed.items()], ignore_index=True),
        grads=pd.concat([_grad_rows(n, e) for n, e in typed.items()], ignore_index=True),
    )


def net_colours(residual: Mapping[str, bool]) -> alt.Scale:
    """Plain nets in reds and oranges, residual nets in blues, in the order given."""
    plain = itertools.cycle(PLAIN_SHADES)
    skips = itertools.cycle(RESIDUAL_SHADES)
    names = list(residual)
    return alt.Scale(domain=names, range=[next(skips if residual[n] else plain) for n in names])


def lockstep_chart(
    frame: pd.DataFrame,
    x: str,
    value: str,
    title: str,
    value_title: str,
    residual: Mapping[str, bool],
    log: bool = False,
    height: int = 280,
    marks: Sequence[tuple[int, str]] = (),
) -> alt.Chart:
    """One metric of every member against `x` ("step" or "epoch"), one line per net; each of
    `marks` (x, words) a labelled vertical line (where a gap opened)."""
    scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    points = x == "epoch"  # few points per net: mark each one
    lines = (
        alt.Chart(frame.dropna(subset=[value]), title=title, height=height)
        .mark_line(point=points)
        .encode(
            x=alt.X(f"{x}:Q", title=x, axis=alt.Axis(format="d", tickMinStep=1)),
            # 3 significant digits: one epoch's single value would otherwise label its
            # tick in full ("23.377404")
            y=alt.Y(f"{value}:Q", title=value_title, scale=scale, axis=alt.Axis(format=".3~g")),
            color=alt.Color(
                "net:N",
                title="network",
                scale=net_colours(residual),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=["net", x, alt.Tooltip(f"{value}:Q", format=".4g")],
        )
    )
    if not marks:
        return lines
    at = pd.DataFrame({x: [m[0] for m in marks], "words": [m[1] for m in marks]})
    rule = alt.Chart(at).mark_rule(color=INK, strokeDash=[4, 3], strokeWidth=2).encode(x=f"{x}:Q")
    words = (
        alt.Chart(at)
        .mark_text(align="left", dx=4, dy=8, baseline="top", color=INK)
        .encode(x=f"{x}:Q", y=alt.value(0), text="words:N")
    )
    return alt.layer(lines, rule, words)


def lockstep_sentence(
    frames: LockstepFrames, span: int = 20, residual: Mapping[str, bool] | None = None
) -> str:
    """Where the members stand at the latest step all of them reached, e.g. 'Averaged over
    steps 101-120, the training loss is 1.84 for plain20 and 1.62 for resnet20: resnet20 is
    lowest so far.' A plain net ahead of a residual one is said to be expected early on."""
    steps = frames.steps.dropna(subset=["loss"])
    if steps.empty or steps["net"].nunique() < 2:
        return "The curves appear after the first steps."
    common = int(steps.groupby("net")["step"].max().min())
    first = max(common - span + 1, 1)
    window = steps[steps["step"].between(first, common)]
    means = window.groupby("net", sort=False)["loss"].mean()
    parts = [f"{value:.2f} for {net}" for net, value in means.items()]
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    said = (
        f"Averaged over steps {first}-{common}, the training loss is {listed}: "
        f"{means.idxmin()} is lowest so far (one run each)."
    )
    if residual and not residual.get(means.idxmin(), True) and any(residual.values()):
        said += (
            " A plain net ahead early on is expected: the residual net's lead opens as "
            "training goes on, and more so the deeper the nets."
        )
    return said


def _clock(seconds: float | None) -> str:
    """75.2 -> '1:15'."""
    if seconds is None:
        return "?"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def demo_gaps(frames: LockstepFrames, residual: Mapping[str, bool], depth: Mapping[str, int]) -> list[Gap]:  # fmt: skip
    """The gaps a group is there to show (`resnet_core.training.gap.demo_pairs`): the residual
    net below its plain twin, and the deeper plain net above the shallower one."""
    gap, deeper = demo_pairs(dict(residual), dict(depth))
    steps = frames.steps.dropna(subset=["loss"])
    found = [] if gap is None else [gap_opened(steps, *gap)]
    return found + ([] if deeper is None else [gap_opened(steps, *deeper)])


def gap_sentence(found: Gap) -> str:
    """When the gap opened, computed from the events ("After 0:48 (step 60), resnet56's
    training loss fell 0.2 below plain56's and has stayed below"), or that it has not yet."""
    if found.open:
        return (
            f"After {_clock(found.seconds)} (step {found.step}), {found.lower}'s training loss "
            f"fell {found.margin:g} below {found.upper}'s and has stayed below (one run)."
        )
    if found.last_step == 0:
        return f"Waiting for the first steps: {found.lower} against {found.upper}."
    apart = "" if found.difference != found.difference else f"; now {found.difference:+.2f}"
    return (
        f"Step {found.last_step}: {found.lower}'s training loss is not yet {found.margin:g} below "
        f"{found.upper}'s (running mean of the last steps{apart})."
    )


def twin_sentence(frames: LockstepFrames, student: str, reference: str, close: float = 0.05) -> str:
    """How far the student's net's training loss strayed from the reference net's, step by
    step. Both start from the same weights and see the same batches, so a correct net should
    follow the reference to rounding ("" before both have logged a step)."""
    steps = frames.steps.dropna(subset=["loss"])
    pivot = steps.pivot_table(index="step", columns="net", values="loss", aggfunc="last")
    if student not in pivot or reference not in pivot:
        return ""
    gaps = (pivot[student] - pivot[reference]).abs().dropna()
    if gaps.empty:
        return ""
    worst, at = float(gaps.max()), int(gaps.idxmax())
    if worst <= close:
        return (
            f"{student} and {reference} started from the same weights and saw the same batches: "
            f"at each of {len(gaps)} logged steps their training losses agree to within "
            f"{max(worst, 1e-4):.4f} (one run): your net trains as the reference does, so "
            "its curve lies under the reference's."
        )
    return (
        f"{student} and {reference} started from the same weights and saw the same batches, "
        f"yet their training losses differ by up to {worst:.3f} (at step {at}, one run): "
        "in training mode your net computes something else (a BatchNorm setting, dropout, "
        "or a module used twice?)."
    )


def barely_trained_sentence(frames: LockstepFrames, share: float = 0.5) -> str:
    """A warning for each net whose best test accuracy is below `share` of the best net's:
    its gradients over training are those of a net that hardly learned, not of how such a
    net trains ("" when every net trained comparably, or none was evaluated)."""
    tested = frames.epochs.dropna(subset=["test_acc"])
    if tested.empty or tested["net"].nunique() < 2:
        return ""
    best = tested.groupby("net", sort=False)["test_acc"].max()
    leader = best.idxmax()
    behind = [net for net, value in best.items() if value < share * best[leader]]
    if not behind:
        return ""
    named = "; ".join(f"{net} reached {best[net]:.1f} % test accuracy" for net in behind)
    return (
        f"{named}, against {best[leader]:.1f} % for {leader} (chance: 10 % on CIFAR-10): "
        f"{'it' if len(behind) == 1 else 'they'} barely trained, so "
        f"{'its' if len(behind) == 1 else 'their'} gradients here show a net that did not "
        "learn, not how such a net trains when it does. Compare with care."
    )


def layer_grad_frame(
    events_by_net: Mapping[str, Sequence[Event | dict]], max_steps: int = 80
) -> pd.DataFrame:
    """Per-layer weight-gradient norms over training, one row per net, logged step and layer
    (columns net, step, index, layer, grad_norm); at most `max_steps` evenly spread logged
    steps per net, so a long run still draws as a readable heat map."""
    parts = []
    for net, events in events_by_net.items():
        logged = [e for e in _typed(events) if isinstance(e, GradNorms) and e.rows]
        keep = logged[:: max(1, -(-len(logged) // max_steps))]  # ceil division
        rows = [
            {
                "net": net,
                "step": e.step,
                "index": r.get("index"),
                "layer": r.get("layer"),
                "grad_norm": r.get("grad_norm"),
            }
            for e in keep
            for r in e.rows
            if r.get("kind") in ("conv", "linear")
        ]
        parts.append(pd.DataFrame(rows, columns=["net", "step", "index", "layer", "grad_norm"]))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    values = pd.to_numeric(frame.get("grad_norm"), errors="coerce")
    return frame[values > 0].reset_index(drop=True) if len(frame) else frame


def layer_grad_heatmap(frame: pd.DataFrame, height: int = 260) -> alt.FacetChart:
    """Layer x step heat map of gradient norms, one panel per net side by side on one log
    colour scale (the same colour means the same norm in every panel)."""
    low, high = float(frame["grad_norm"].min()), float(frame["grad_norm"].max())
    return (
        alt.Chart(frame, height=height, width=320)
        .mark_rect()
        .encode(
            x=alt.X("step:O", title="step", axis=alt.Axis(labelOverlap=True, labelAngle=0)),
            y=alt.Y("index:O", title="layer (0 = input end)", axis=alt.Axis(labelOverlap=True)),
            color=alt.Color(
                "grad_norm:Q",
                title="gradient norm",
                scale=alt.Scale(type="log", scheme="viridis", domain=[low, high]),
            ),
            tooltip=["net", "step", "layer", alt.Tooltip("grad_norm:Q", format=".3g")],
        )
        .facet(column=alt.Column("net:N", title=None, sort=list(dict.fromkeys(frame["net"]))))
        .properties(title="Gradient norm per layer over training (log colour, shared scale)")
    )
