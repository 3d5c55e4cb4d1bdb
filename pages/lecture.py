"""Lecture: the story of residual nets as slides, from results shipped in checkpoints/demo."""

from __future__ import annotations

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
from resnet_core.studies import landscape as landscape_study
from resnet_core.studies import lesion as lesion_study
from resnet_core.studies import mechanisms as mechanisms_study
from resnet_core.training.experiment_results import load_experiment
from resnet_core.training.experiments import ExperimentError, shipped_root
from resnet_core.views import charts, lecture, lecture_charts
from resnet_core.views import exercises as exercise_views
from resnet_core.views import landscape as landscape_views
from resnet_core.views import lesion as lesion_views
from resnet_core.views import mechanisms as mechanism_views
from resnet_core.views.diagram import block_diagram
from resnet_core.views.explain import (
    fmt_ratio,
    gradient_story,
    ratio_spread_sentence,
    response_sentence,
    sample_text,
)

_ui.require_router()

SPREAD_SEEDS = 3  # slide 4 states its ratios' spread over this many seeds

# A slide fits a 1280x800 projector with the sidebar collapsed and large fonts on
# (tests/test_lecture_browser.py): little padding, and the downloads in the top row.
st.html(
    """<style>
    [data-testid="stMainBlockContainer"] p, [data-testid="stMainBlockContainer"] li {font-size: 1.35rem;}
    [data-testid="stMainBlockContainer"] h1 {font-size: 2.2rem; padding: 0.25rem 0 0 0;}
    [data-testid="stMainBlockContainer"] {padding-top: 3.5rem; padding-bottom: 1rem;}
    </style>"""
)
CHART_HEIGHT = 250  # a slide's one chart, plot area (its axes, title and legend come on top)
_figures: list = []  # this run's "Figures" popover in the top row, made by the first download


def _downloads(name: str, chart: alt.TopLevelMixin | None = None, data=None) -> None:
    """The slide's downloads, in the "Figures" popover of the top row (not below the chart,
    where they would push the slide past the projector's height)."""
    if not _figures:
        _figures.append(nav.popover("Figures", icon=":material/download:"))
    with _figures[0]:
        st.caption(name.replace("_", " "))
        _ui.downloads(name, chart=chart, data=data)


def show(
    chart: alt.TopLevelMixin,
    name: str,
    data: pd.DataFrame | None = None,
    height: int | None = CHART_HEIGHT,
) -> None:
    """A chart in projector-sized fonts, `height` tall (None: as made), downloads in the top row."""
    if height is not None:
        chart = chart.properties(height=height)
    chart = charts.themed(chart, True)
    st.altair_chart(chart, width="stretch", theme=None)  # distinct colours on a projector
    _downloads(name, chart=chart, data=data)


def table(frame: pd.DataFrame, name: str) -> None:
    st.dataframe(frame, width="stretch", hide_index=True)
    _downloads(name, data=frame)


@st.cache_data(show_spinner=False)
def _slide_data(key: str):
    """Everything a slide reads from checkpoints/demo, read once per server."""
    if key == "problem":
        return (
            lecture.degradation_curves(),
            lecture.degradation_summary(),
            lecture.recipe_text("degradation"),
        )
    if key == "lesion":
        result = lesion_study.shipped_results()
        if result is None:
            raise ExperimentError(
                "checkpoints/demo/lesion/: the shipped lesion results are missing"
            )
        return lesion_study.select(result, ["plain56", "resnet56"])
    if key == "landscape":
        shipped = landscape_study.read_shipped()
        if shipped is None:
            raise ExperimentError("checkpoints/demo/landscape/: the shipped results are missing")
        return shipped
    if key == "mechanisms":
        study = mechanisms_study.read_study()
        if study is None:
            raise ExperimentError("checkpoints/demo/mechanisms/: the shipped study is missing")
        return study
    if key == "results":
        return lecture.results_table(), lecture.recipe_text("degradation")
    if key == "responses":
        sample = sample_text(lecture.responses_sample())
        return lecture.trained_responses(), lecture.recipe_text("layer_responses"), sample
    if key == "cnn_vs_resnet":
        return lecture.comparison_table("cnn_vs_resnet"), lecture.recipe_text("cnn_vs_resnet")
    if key == "weight_decay":
        return lecture.weight_decay_gap(), lecture.recipe_text("weight_decay")
    if key == "he2016":
        name = lecture.he2016_name()
        if name is None:
            raise ExperimentError("checkpoints/demo/he2016/: the shipped results are missing")
        curves = lecture.he2016_curves(name)
        record = load_experiment(shipped_root() / name)["record"]
        return curves, lecture.he2016_table(curves), record["recipe"], lecture.recipe_text(name)
    return None


@st.cache_data(show_spinner="Probing plain-56 and ResNet-56 at initialisation ...")
def _probe(seed: int) -> dict[str, pd.DataFrame]:
    inputs, targets = sample_batch(None, None, 32, seed)
    frames = {}
    for name in ("plain56", "resnet56"):
        torch.manual_seed(seed)
        frames[name] = gradient_norms(build_model(name), inputs, targets)
    return frames


def _warm() -> None:
    _ui.blocks_of(get_preset("resnet18").to_json(), 32)  # slide 3's trace
    for seed in range(SPREAD_SEEDS):
        _probe(seed)  # slide 4's default probe and its spread


@st.cache_resource
def _warm_probe() -> threading.Thread:
    """Trace slide 3's net and measure slide 4's default probe in the background once per
    server, so those slides open at once."""
    thread = threading.Thread(target=_warm, daemon=True, name="lecture-warm")
    thread.start()
    return thread


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
        show(
            lecture_charts.error_chart(curves, "plain"),
            "degradation_plain",
            curves[curves["family"] == "plain"],
        )
    with right:
        show(
            lecture_charts.error_chart(curves, "residual"),
            "degradation_residual",
            curves[curves["family"] == "residual"],
        )
    details(summary, "degradation_summary", recipe + " Compare He et al. 2016, Fig. 6.")


def slide_block() -> None:
    left, right = st.columns(2)
    with left:
        st.markdown(
            "**Residual block**: the layers learn only the *change* F(x); the input rides along."
        )
        st.graphviz_chart(lecture.residual_block_dot(True), height=430)
    with right:
        st.markdown("**Plain block**: the same layers must learn the whole mapping.")
        st.graphviz_chart(lecture.residual_block_dot(False), height=430)
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
    st.graphviz_chart(block_diagram(blocks, "ResNet-18, 3x32x32 input"), height=455)
    view = blocks[["name", "output_shape", "shortcut", "params"]].copy()
    view["output_shape"] = view["output_shape"].map(lambda s: " x ".join(map(str, s[1:])))
    with st.expander("Block table"):
        table(view, "resnet18_blocks")


def slide_gradients() -> None:
    seed = int(nav.number_input("Seed", 0, 999, 0, key="lecture_seed", width=140))
    frames = _probe(seed)
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
    show(chart, "gradients_at_init", long, height=220)
    seeds = list(range(seed, seed + SPREAD_SEEDS))
    ratios = {net: [grad_ratio(_probe(s)[net]) for s in seeds] for net in ("plain56", "resnet56")}
    st.caption(
        f"First conv / last conv gradient at seed {seed}: {fmt_ratio(plain)} in plain-56, "
        f"{fmt_ratio(residual)} in ResNet-56. {ratio_spread_sentence(ratios, seeds)} Measured "
        "now on random inputs, Kaiming init, BatchNorm in training mode."
    )


def details(table_frame: pd.DataFrame, name: str, recipe: str) -> None:
    """The table and recipe behind a slide's figure, folded away."""
    with st.expander("Table, recipe and command"):
        table(table_frame, name)
        st.caption(recipe)


def slide_responses() -> None:
    responses, recipe, sample = _slide_data("responses")
    residual = {n: n.startswith("resnet") for n in responses["net"].unique()}
    frames = {n: part for n, part in responses.groupby("net", sort=False)}
    st.markdown(response_sentence(frames, residual))
    chart = charts.layer_norms_chart(
        responses,
        "std",
        f"Std of each BatchNorm output: trained nets, eval mode, {sample}",
        "std",
        log=False,
        residual=residual,
        height=420,
    )
    show(chart, "layer_responses_trained", responses)
    details(responses, "layer_responses", recipe)


def slide_lesion() -> None:
    result = _slide_data("lesion")
    st.markdown(lesion_views.single_story(result.single))
    show(lesion_views.paired_chart(result.single), "lesion_single", result.single, height=None)
    with st.expander("k blocks deleted at random, and how this was measured"):
        st.markdown(lesion_views.random_story(result.random))
        show(lesion_views.random_chart(result.random, large=True), "lesion_random", result.random)
        record = result.record
        st.caption(
            f"{record.get('images', '?')} CIFAR-10 test images ({record.get('sample', '')}), "
            f"{record.get('draws', '?')} draws per k. Command: `{record.get('command', '')}`"
        )


def slide_landscape() -> None:
    shipped = _slide_data("landscape")
    slices = shipped.slices[shipped.slices["net"].str.endswith("56")]
    st.markdown(
        f"{landscape_views.slice_sentence(slices, 0.5)} {landscape_views.slice_verdict(slices, 0.5)}"
    )
    left, right = st.columns(2)
    with left:
        show(landscape_views.slice_chart(slices, "accuracy"), "landscape_slices_accuracy", slices)
    with right:
        show(landscape_views.slice_chart(slices, "loss"), "landscape_slices_loss", slices)
    with st.expander("The stale-statistics artefact, the 2-D maps, and how this was measured"):
        st.markdown(landscape_views.artefact_sentence(slices, 1.0))
        surfaces = shipped.surfaces
        st.markdown(
            f"{landscape_views.roughness_sentence(surfaces)} "
            f"{landscape_views.roughness_verdict(surfaces)}"
        )
        chart = landscape_views.surface_chart(surfaces, side=380)
        show(chart, "landscape_surfaces", surfaces, height=None)
        st.caption(f"Command: `{shipped.slices_record.get('command', '')}`")


def slide_shatter() -> None:
    study = _slide_data("mechanisms")
    st.markdown(mechanism_views.along_sentence(study.shatter, 56))
    chart = mechanism_views.along_chart(study.along, 56, height=120)
    show(chart, "shatter_line", study.along, height=None)
    with st.expander("Every variant from 20 to 110 layers, and how this was measured"):
        st.markdown(mechanism_views.depth_sentence(study.shatter))
        show(mechanism_views.correlation_chart(study.shatter), "shatter_depth", study.shatter)
        st.caption(f"Command: `{study.record.get('command', '')}`")


def slide_paths() -> None:
    study = _slide_data("mechanisms")
    net = list(dict.fromkeys(study.paths["net"]))[-1]
    st.markdown(mechanism_views.paths_sentence(study.paths, net))
    chart = mechanism_views.paths_chart(study.paths, net, height=CHART_HEIGHT)
    show(chart, "short_paths", study.paths, height=None)
    st.caption(f"Command: `{study.record.get('command', '')}`")


def slide_identity() -> None:
    study = _slide_data("mechanisms")
    st.markdown(mechanism_views.variance_sentence(study.variance))
    left, right = st.columns(2)
    with left:
        show(mechanism_views.variance_chart(study.variance), "identity_ratio", study.variance)
    with right:
        show(mechanism_views.skip_chart(study.variance), "identity_skip", study.variance)


def slide_results() -> None:
    results, recipe = _slide_data("results")
    st.markdown(lecture.results_sentence(results))
    long = lecture.results_long(results)
    chart = lecture_charts.results_chart(long, list(results["network"]))
    show(chart, "results_vs_he_table6", long)
    details(results, "results_vs_he_table6_table", recipe + " " + lecture.HE_RECIPE)


def slide_cnn_vs_resnet() -> None:
    comparison, recipe = _slide_data("cnn_vs_resnet")
    st.markdown(lecture.comparison_sentence(comparison))
    chart = lecture_charts.comparison_chart(comparison)
    show(chart, "cnn_vs_resnet", comparison)
    details(comparison, "cnn_vs_resnet_table", recipe)


def slide_weight_decay() -> None:
    gap, recipe = _slide_data("weight_decay")
    st.markdown(lecture.weight_decay_sentence(gap))
    gap_chart = lecture_charts.weight_decay_chart(gap)
    show(gap_chart, "weight_decay_gap", gap)
    details(gap, "weight_decay_table", recipe)


def slide_he2016() -> None:
    curves, results, recipe, recipe_line = _slide_data("he2016")
    st.markdown(lecture.he2016_sentence(results, recipe))
    left, right = st.columns(2)
    for column, family in ((left, "plain"), (right, "residual")):
        with column:
            part = curves[curves["family"] == family]
            show(lecture_charts.fig6_chart(curves, family), f"he2016_fig6_{family}", part)
    st.caption(
        "Dashed: training error, measured on the augmented batches of each epoch (as He et al. "
        "Fig. 6); solid: test error."
    )
    table(results, "he2016_vs_table6")
    st.caption(f"{lecture.HE_TABLE6_SOURCE} {recipe_line} {lecture.HE_RECIPE}")


def slide_your_turn() -> None:
    st.markdown(
        "Write the residual block, then the small ResNet from your own blocks, in a file of "
        "your own. The checker runs it in a process of its own and says what is wrong, with "
        "the number it measured; a net that passes trains beside the plain net and the "
        "reference ResNet."
    )
    st.code(exercise_views.your_turn_commands(), language="bash")
    st.page_link("pages/exercises.py", label="Or write it on the Exercises page",
                 icon=":material/edit_note:")  # fmt: skip
    mistakes = exercise_views.your_turn_mistakes()
    groups = list(mistakes.groupby("exercise", sort=False)["the checker names"])
    with st.expander(f"The {len(mistakes)} mistakes the checker names"):
        for column, (title, caught) in zip(st.columns(len(groups)), groups):
            column.markdown(f"*{title}*\n" + "\n".join(f"- {item}" for item in caught))
    _downloads("your_turn_mistakes", data=mistakes)


SLIDE_VIEWS = {
    "problem": slide_problem,
    "block": slide_block,
    "shapes": slide_shapes,
    "gradients": slide_gradients,
    "responses": slide_responses,
    "lesion": slide_lesion,
    "landscape": slide_landscape,
    "shatter": slide_shatter,
    "paths": slide_paths,
    "identity": slide_identity,
    "results": slide_results,
    "cnn_vs_resnet": slide_cnn_vs_resnet,
    "weight_decay": slide_weight_decay,
    "he2016": slide_he2016,
    "your_turn": slide_your_turn,
}


def go(index: int) -> None:
    st.query_params["slide"] = str(index + 1)


_warm_probe()
slides = lecture.lecture_slides()
index = lecture.slide_index(st.query_params.get("slide", 1), len(slides))
slide = slides[index]
if st.query_params.get("slide") != str(index + 1):
    st.query_params["slide"] = str(index + 1)  # a link always names the slide it shows

first, last = index == 0, index == len(slides) - 1
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
nav.markdown(f"**Slide {index + 1} of {len(slides)}**")
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
