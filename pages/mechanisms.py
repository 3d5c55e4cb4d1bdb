"""Mechanisms: why residual nets train, measured on nets at init and trained. Shattered
gradients, short paths, the pull toward the identity, and how the block variants that
followed ResNet train. Everything shown is read from the shipped study; nothing runs here."""

from __future__ import annotations

import streamlit as st

from pages import _ui
from resnet_core.studies import mechanisms as study
from resnet_core.views import mechanisms as views
from resnet_core.views.explain import fmt_seconds

_ui.require_router()

SECTIONS = ("Shattered gradients", "Short paths", "Pull toward the identity", "Do they train?")
PAPERS = {
    "Shattered gradients": "[Balduzzi et al. 2017](https://arxiv.org/abs/1702.08591)",
    "Short paths": "[Veit et al. 2016](https://arxiv.org/abs/1605.06431)",
    "Pull toward the identity": "[De & Smith 2020](https://arxiv.org/abs/2002.10444)",
    "Do they train?": "[He et al. 2016](https://arxiv.org/abs/1603.05027), [Goyal et al. "
    "2017](https://arxiv.org/abs/1706.02677), [Zhang et al. 2019](https://arxiv.org/abs/1901.09321), "
    "De & Smith 2020",
}


@st.cache_data(show_spinner=False)
def _shipped() -> study.Shipped | None:
    return study.read_study()


@st.cache_data(show_spinner=False)
def _trained():
    return study.variant_training()


def _made(result: study.Shipped, part: str) -> str:
    record = result.record
    hardware = record.get("hardware", {})
    return (
        f"Measured in {fmt_seconds(record.get('seconds', {}).get(part))} on "
        f"{hardware.get('cpu_count', '?')} CPU cores with torch {record.get('torch', '?')}, "
        f"{str(record.get('date', ''))[:10]}, by `{record.get('command', '?')}`."
    )


def _shatter(result: study.Shipped) -> None:
    st.markdown(
        "The gradient of a net's features with respect to its input, along a line of inputs: "
        "one CIFAR-10 test image blended into another of a different class in 64 steps. "
        "A gradient that is smooth along the line tells the optimiser something about nearby "
        "inputs; one that looks like white noise does not."
    )
    depths = sorted(result.along["depth"].unique())
    depth = st.segmented_control("Layers", depths, key="shatter_depth", default=depths[1])
    depth = depth or depths[1]
    _ui.show_chart(views.along_chart(result.along, depth), f"shatter-line-{depth}", result.along)
    st.markdown(views.along_sentence(result.shatter, depth))
    st.subheader("Every variant, 20 to 110 layers")
    _ui.show_chart(views.correlation_chart(result.shatter), "shatter-depth", result.shatter)
    st.markdown(views.depth_sentence(result.shatter))
    st.caption(
        "Neighbour correlation: the mean Pearson correlation between the gradients at "
        "neighbouring points of the line. Line: mean over seeds; band: lowest to highest seed. "
        + _made(result, "shatter")
    )


def _paths(result: study.Shipped) -> None:
    st.markdown(
        "A net of n residual blocks is an ensemble of 2^n paths: at every block the signal "
        "passes the branch or the skip. How long are the paths the gradient comes through? "
        "Measured by letting the gradient through the branches of k blocks picked at random "
        "and through the skips of the others, for every k."
    )
    nets = list(dict.fromkeys(result.paths["net"]))
    net = st.segmented_control("Net", nets, key="paths_net", default=nets[-1]) or nets[-1]
    _ui.show_chart(views.paths_chart(result.paths, net), f"paths-{net}", result.paths)
    st.markdown(views.paths_sentence(result.paths, net))
    st.caption(
        "b: the input gradient's norm through one path of that length, mean over the sampled "
        "paths; c: the number of paths times b, as a share of the sum. " + _made(result, "paths")
    )


def _identity(result: study.Shipped) -> None:
    st.markdown(
        "At every block, the variance of what the residual branch adds against the variance "
        "of the skip it is added to, at init. A small ratio means the block is close to the "
        "identity: the signal (and the gradient) passes nearly unchanged."
    )
    left, right = st.columns(2)
    with left:
        _ui.show_chart(views.variance_chart(result.variance), "identity-ratio", result.variance)
    with right:
        _ui.show_chart(views.skip_chart(result.variance), "identity-skip", result.variance)
    st.markdown(views.variance_sentence(result.variance))
    st.caption("Lines: mean over seeds. " + _made(result, "variance"))


def _training(_: study.Shipped) -> None:
    found = _trained()
    if found is None:
        st.info(
            "The shipped training runs (checkpoints/demo/variants56/) are missing; make them "
            "with `python -m resnet_core experiment variants56 --out checkpoints/demo`.",
            icon=":material/folder_off:",
        )
        return
    steps, epochs, record = found
    st.markdown(
        "Every variant at 56 layers, trained for a few epochs on a subset, on the same "
        "batches in the same order: does what the mechanisms predict show in training?"
    )
    _ui.show_chart(views.training_chart(steps), "variants56-loss", steps)
    st.markdown(views.training_sentence(epochs, record))
    _ui.show_table(views.training_table(epochs), "variants56-table")
    hardware = record.get("hardware", {})
    st.caption(
        f"Trained in {fmt_seconds(record.get('wall_seconds'))} on {hardware.get('cpu_count', '?')} "
        f"CPU cores, torch {record.get('torch', '?')}, {str(record.get('date', ''))[:10]}, by "
        f"`{record.get('command', '?')}`."
    )


result = _shipped()
st.title("Mechanisms")
if result is None:
    st.info(
        "The shipped measurements (checkpoints/demo/mechanisms/) are missing; make them with "
        "`python -m resnet_core mechanisms study checkpoints/demo/degradation/resnet56 "
        "--out checkpoints/demo/mechanisms`.",
        icon=":material/folder_off:",
    )
    st.stop()
section = st.segmented_control("Mechanism", SECTIONS, key="mechanism", default=SECTIONS[0])
section = section or SECTIONS[0]
st.caption(f"{section}: {PAPERS[section]}.")
VIEWS = {SECTIONS[0]: _shatter, SECTIONS[1]: _paths, SECTIONS[2]: _identity, SECTIONS[3]: _training}
VIEWS[section](result)
