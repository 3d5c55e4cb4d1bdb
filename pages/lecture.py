"""Lecture: the story of residual nets as slides, from results shipped in checkpoints/demo."""

from __future__ import annotations

import math
import threading

import altair as alt
import pandas as pd
import streamlit as st
import torch

from pages import _ui
from resnet_core import build_model, gradient_norms
from resnet_core.analysis.measure import sample_batch
from resnet_core.analysis.probes import grad_ratio
from resnet_core.nets.spec import get_preset
from resnet_core.training.experiments import ExperimentError
from resnet_core.views import charts, lecture
from resnet_core.views.diagram import block_diagram
from resnet_core.views.explain import fmt_ratio, gradient_story

_ui.require_router()

st.html(
    """<style>
    [data-testid="stMainBlockContainer"] p, [data-testid="stMainBlockContainer"] li {font-size: 1.35rem;}
    [data-testid="stMainBlockContainer"] h1 {font-size: 2.6rem;}
    </style>"""
)


def show(chart: alt.TopLevelMixin, name: str, data: pd.DataFrame | None = None) -> None:
    """A chart in projector-sized fonts, with PNG / SVG / CSV downloads."""
    _ui.show_chart(chart, name, data, large=True)


def table(frame: pd.DataFrame, name: str) -> None:
    st.dataframe(frame, width="stretch", hide_index=True)
    _ui.downloads(name, data=frame)


@st.cache_data(show_spinner=False)
def _slide_data(key: str):
    """Everything a slide reads from checkpoints/demo, read once per server."""
    if key == "problem":
        return (
            lecture.degradation_curves(),
            lecture.degradation_summary(),
            lecture.recipe_text("degradation"),
        )
    if key == "results":
        return (
            lecture.results_table(),
            lecture.comparison_table("cnn_vs_resnet"),
            lecture.weight_decay_gap(),
            lecture.trained_responses(),
            {
                name: lecture.recipe_text(name)
                for name in ("degradation", "cnn_vs_resnet", "weight_decay")
            },
        )
    return None


@st.cache_data(show_spinner="Probing plain-56 and ResNet-56 at initialisation ...")
def _probe(seed: int) -> dict[str, pd.DataFrame]:
    inputs, targets = sample_batch(None, None, 32, seed)
    frames = {}
    for name in ("plain56", "resnet56"):
        torch.manual_seed(seed)
        frames[name] = gradient_norms(build_model(name), inputs, targets)
    return frames


@st.cache_resource
def _warm_probe() -> threading.Thread:
    """Measure the default probe in the background once per server, so slide 4 opens at once."""
    thread = threading.Thread(target=_probe, args=(0,), daemon=True, name="lecture-probe")
    thread.start()
    return thread


def error_chart(curves: pd.DataFrame, family: str) -> alt.Chart:
    """Training (solid) and test (dashed) error per epoch; both families share one y scale."""
    part = curves[(curves["family"] == family)]
    colour = charts.PLAIN_COLOUR if family == "plain" else charts.RESIDUAL_COLOUR
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


def slide_problem() -> None:
    curves, summary, recipe = _slide_data("problem")
    final = summary.set_index("network")["final train error (%)"]
    st.markdown(
        f"Stack more layers onto a plain net and it gets **worse on its own training data**: "
        f"plain-56 ends at **{final['plain56']:.1f}%** training error, plain-20 at "
        f"**{final['plain20']:.1f}%**. That is not overfitting (the training error itself rises). "
        f"With skip connections the deeper net is better: ResNet-56 **{final['resnet56']:.1f}%**, "
        f"ResNet-20 **{final['resnet20']:.1f}%** (thick lines: 56 layers; dashed: test)."
    )
    left, right = st.columns(2)
    with left:
        show(error_chart(curves, "plain"), "degradation_plain", curves[curves["family"] == "plain"])
    with right:
        show(
            error_chart(curves, "residual"),
            "degradation_residual",
            curves[curves["family"] == "residual"],
        )
    table(summary, "degradation_summary")
    st.caption(recipe + " Compare He et al. 2016, Fig. 6.")


def slide_block() -> None:
    left, right = st.columns(2)
    with left:
        st.markdown(
            "**Residual block**: the layers learn only the *change* F(x); the input rides along."
        )
        st.graphviz_chart(lecture.residual_block_dot(True))
    with right:
        st.markdown("**Plain block**: the same layers must learn the whole mapping.")
        st.graphviz_chart(lecture.residual_block_dot(False))
    st.markdown(
        "If the best thing a block can do is nothing, the residual block only has to push F(x) to "
        "zero; a plain block has to learn the identity through two convolutions and a ReLU. "
        "Where the shape changes, the shortcut projects (1x1 conv + BN) or pads with zeros."
    )


def slide_shapes() -> None:
    spec = get_preset("resnet18")
    blocks = _ui.blocks_of(spec.to_json(), 32)
    st.markdown(
        "ResNet-18 on a 32x32 image: every stage after the first **halves the picture and doubles "
        "the channels**; the blue shortcuts carry the input around each block."
    )
    left, right = st.columns([3, 2])
    with left:
        st.graphviz_chart(block_diagram(blocks, "ResNet-18, 3x32x32 input"))
    with right:
        view = blocks[["name", "output_shape", "shortcut", "params"]].copy()
        view["output_shape"] = view["output_shape"].map(lambda s: " x ".join(map(str, s[1:])))
        table(view, "resnet18_blocks")


def slide_gradients() -> None:
    seed = st.number_input("Seed", 0, 999, 0, key="lecture_seed")
    frames = _probe(int(seed))
    plain, residual = grad_ratio(frames["plain56"]), grad_ratio(frames["resnet56"])
    st.markdown(gradient_story("plain56", plain, "resnet56", residual))
    convs = {name: frame[frame["kind"] == "conv"] for name, frame in frames.items()}
    long = charts.per_layer_long(convs, "grad_norm")
    chart = charts.layer_norms_chart(
        long,
        "grad_norm",
        "Weight-gradient norm of each conv layer at initialisation (live, batch of 32)",
        "gradient norm (log)",
        residual={"plain56": False, "resnet56": True},
        height=380,
    )
    show(chart, "gradients_at_init", long)
    st.caption(
        f"First conv / last conv gradient: {fmt_ratio(plain)} in plain-56, {fmt_ratio(residual)} in "
        "ResNet-56. Measured now on random inputs, Kaiming init, BatchNorm in training mode."
    )


def slide_results() -> None:
    results, comparison, gap, responses, recipes = _slide_data("results")
    st.markdown("**Our numbers beside He et al. 2016, Table 6** (CIFAR-10 test error).")
    table(results, "results_vs_he_table6")
    st.caption(
        recipes["degradation"]
        + " "
        + lecture.HE_RECIPE
        + " Our short recipe is why our errors are higher; the ordering is what carries over."
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**A small CNN against ResNet-18**")
        table(comparison, "cnn_vs_resnet")
        st.caption(recipes["cnn_vs_resnet"])
    with right:
        st.markdown("**Weight decay: the train-test gap per epoch**")
        gap_chart = (
            alt.Chart(gap, height=300, title="train accuracy - test accuracy")
            .mark_line(point=True)
            .encode(
                x=alt.X("epoch:Q", axis=alt.Axis(format="d", tickMinStep=1)),
                y=alt.Y("gap:Q", title="gap (percentage points)"),
                color=alt.Color("run:N", title="weight decay", legend=alt.Legend(orient="top")),
                tooltip=[
                    "run",
                    "epoch",
                    alt.Tooltip("gap:Q", format=".2f"),
                    alt.Tooltip("test:Q", format=".2f"),
                ],
            )
        )
        show(gap_chart, "weight_decay_gap", gap)
        best = gap.groupby("run")["test"].max().round(2).to_dict()
        st.caption(f"Best test accuracy: {best}. " + recipes["weight_decay"])
    st.markdown(
        "**Layer responses of the trained nets** (He et al. Fig. 7): std of each BN output."
    )
    chart = charts.layer_norms_chart(
        responses,
        "std",
        "Response std per layer (trained nets, 256 test images)",
        "std",
        log=False,
        residual={n: n.startswith("resnet") for n in responses["net"].unique()},
        height=340,
    )
    show(chart, "layer_responses_trained", responses)


SLIDE_VIEWS = {
    "problem": slide_problem,
    "block": slide_block,
    "shapes": slide_shapes,
    "gradients": slide_gradients,
    "results": slide_results,
}


def go(index: int) -> None:
    st.query_params["slide"] = str(index + 1)


_warm_probe()
index = lecture.slide_index(st.query_params.get("slide", 1))
slide = lecture.SLIDES[index]
if st.query_params.get("slide") != str(index + 1):
    st.query_params["slide"] = str(index + 1)  # a link always names the slide it shows

first, last = index == 0, index == len(lecture.SLIDES) - 1
nav = st.container(horizontal=True, vertical_alignment="center")
nav.button(
    "Previous",
    icon=":material/arrow_back:",
    disabled=first,
    key="lecture_prev",
    on_click=go,
    args=(index - 1,),
    shortcut="Left",
)
nav.button(
    "Next",
    icon=":material/arrow_forward:",
    disabled=last,
    key="lecture_next",
    on_click=go,
    args=(index + 1,),
    type="primary",
    shortcut="Right",
)
nav.markdown(f"**Slide {index + 1} of {len(lecture.SLIDES)}**")
# A presentation clicker sends PageUp / PageDown: two more buttons, kept out of sight.
clicker = st.container(key="lecture_clicker")
clicker.button(
    "Back", key="lecture_page_up", disabled=first, on_click=go, args=(index - 1,), shortcut="PageUp"
)
clicker.button(
    "On",
    key="lecture_page_down",
    disabled=last,
    on_click=go,
    args=(index + 1,),
    shortcut="PageDown",
)
st.html("<style>.st-key-lecture_clicker {display: none;}</style>")

st.title(slide.title)
try:
    SLIDE_VIEWS[slide.key]()
except ExperimentError as error:
    _ui.error_box(
        error,
        "The shipped results in checkpoints/demo are missing or damaged; "
        "restore them with git, or rerun `python -m resnet_core experiment NAME --out checkpoints/demo`.",
    )
