"""Inspect: look inside a trained net. Per-class accuracy and the confusion matrix on the
test set, a gallery of its surest mistakes and least sure hits, and the training images as
stored and as the augmentation shows them to the net."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from pages import _ui
from resnet_core.analysis.inspect import (
    class_samples,
    confusion_matrix,
    gallery,
    per_class_accuracy,
)
from resnet_core.studies.datasets import run_test_set
from resnet_core.training.data import Cifar10
from resnet_core.training.runs import RunError, run_info
from resnet_core.views import inspect as views

_ui.require_router()

GALLERY_SIZE = 12
GALLERY_COLUMNS = 6
PER_CLASS = 4  # image pairs per class in the data grid
KINDS = {"confident_mistakes": "Surest mistakes", "unsure_hits": "Least sure hits"}
VIEWS = {"share": "% of the true class", "count": "counts"}


@st.cache_data(max_entries=16, show_spinner=False)
def _probabilities(run_path: str, mtime: float, data_key: str, _data: Cifar10) -> torch.Tensor:
    """Test-set probabilities of a run's best.pt, cached per run, checkpoint time and data
    (`data_key` names `_data`, which is not hashed)."""
    return views.run_predictions(run_path, _data)


def _results(run: str, data: Cifar10, data_key: str) -> None:
    """Per-class accuracy, the confusion matrix and the gallery of one run."""
    best = Path(run) / "best.pt"
    if not best.is_file():
        st.info(
            "This run saved no weights (best.pt), so it cannot be tested: a run saves them after "
            "its first epoch, and the shipped ResNet-18 runs ship their metrics only. "
            "Pick another run; the data below does not need one.",
            icon=":material/hide_image:",
        )
        return
    count = len(data.test_labels)
    with st.spinner(
        f"Classifying the {count:,} test images with this net on the CPU "
        "(once per run, then kept) ...",
        show_time=True,
    ):
        try:
            probs = _probabilities(run, best.stat().st_mtime, data_key, data)
        except (RunError, RuntimeError) as error:
            _ui.error_box(error, "Pick another run.")
            return
    matrix = confusion_matrix(data.test_labels, probs.argmax(1), data.num_classes)
    frame = per_class_accuracy(matrix, data.classes)
    _accuracy(run, frame, matrix, data)
    _gallery(run, probs, data)


def _accuracy(run: str, frame: pd.DataFrame, matrix: torch.Tensor, data: Cifar10) -> None:
    name, large = Path(run).name, _ui.large_fonts()
    st.subheader("Class by class")
    st.markdown(views.accuracy_story(frame, matrix))
    recorded = run_info(run).best_test_acc
    now = frame["correct"].sum() / max(frame["total"].sum(), 1)
    st.caption(
        f"Tested now in fp32 on all {len(data.test_labels):,} test images: {100 * now:.2f} % right"
        + (f"; the run recorded {100 * recorded:.2f} % for this checkpoint." if recorded else ".")
    )
    left, right = st.columns([2, 3], gap="large")
    with left:
        _ui.show_chart(views.per_class_chart(frame, large), f"{name}-per-class", frame)
    with right:
        shown = st.segmented_control(
            "Cells show", list(VIEWS), format_func=VIEWS.get, key="inspect_cells", default="share"
        )
        cells = views.confusion_frame(matrix, data.classes)
        chart = views.confusion_chart(cells, normalised=shown != "count", large=large)
        _ui.show_chart(chart, f"{name}-confusion", cells)
        st.caption("Rows: the true class; columns: the net's answer. The diagonal is right.")


def _gallery(run: str, probs: torch.Tensor, data: Cifar10) -> None:
    st.subheader("Gallery")
    left, right = st.columns(2)
    kind = left.segmented_control(
        "Show", list(KINDS), format_func=KINDS.get, key="inspect_kind", default=list(KINDS)[0]
    )
    choice = right.selectbox(
        "True class",
        range(-1, data.num_classes),
        format_func=lambda c: "all classes" if c < 0 else data.classes[c],
        key="inspect_class",
    )
    kind, klass = kind or list(KINDS)[0], None if choice < 0 else choice
    shown = gallery(probs, data.test_labels, kind, klass, GALLERY_SIZE)
    st.markdown(views.gallery_story(probs, data.test_labels, shown, kind, klass, data.classes))
    if len(shown):
        captions, colours = views.gallery_captions(probs, data.test_labels, shown, data.classes)
        png = views.image_grid(
            data.test_images[shown],
            GALLERY_COLUMNS,
            captions=captions,
            caption_colours=colours,
            font_size=26 if _ui.large_fonts() else 20,
        )
        table = views.gallery_frame(probs, data.test_labels, shown, data.classes)
        _ui.show_image(png, f"{Path(run).name}-{kind}", table)
        st.caption("Under each image: the net's answer, its probability, and the true class.")


def _data(data: Cifar10) -> None:
    st.subheader("What the net sees")
    state = st.session_state
    state.setdefault("inspect_pick", 0)
    state.setdefault("inspect_draw", 0)
    row = st.container(horizontal=True)
    if row.button("New draw", icon=":material/casino:", help="New random crops and flips"):
        state["inspect_draw"] += 1
    if row.button("Other images", icon=":material/shuffle:", help="Pick other training images"):
        state["inspect_pick"] += 1
    picks, shown = class_samples(
        data.train_labels, PER_CLASS, state["inspect_pick"], data.num_classes
    )
    originals = data.train_images[picks]
    augmented = views.augmented_samples(originals, seed=state["inspect_draw"])
    st.markdown(
        "Training images in pairs: **as stored**, and **augmented** as the net sees them in one "
        "training epoch."
    )
    png = views.augmentation_grid(
        originals,
        augmented,
        len(picks) // max(len(shown), 1),
        [data.classes[c] for c in shown],
        font_size=26 if _ui.large_fonts() else 20,
    )
    _ui.show_image(png, "training-images-augmented")
    st.caption(
        f"Augmented by the training loader itself (draw {state['inspect_draw']}): each image is "
        "padded by 4 pixels with a mirrored border, cropped back to 32x32 at a random offset, "
        "and flipped left-right with probability 1/2. Every epoch draws anew, so the net rarely "
        "sees the same picture twice. Colours are shown before the per-channel normalisation."
    )


st.title("Inspect")
st.markdown(
    "Look inside a trained net: which classes it gets right, what it mistakes for what, and "
    "the pictures it learned from."
)
run = _ui.pick_trained_run("inspect_run", "tested")
if run is None:
    st.stop()
try:
    test_set = run_test_set(run)
except RunError as error:
    st.info(f"This run cannot be tested: {_ui.shown(error)}", icon=":material/help:")
    st.stop()
data = _ui.run_dataset(test_set)
if data is None:
    st.stop()
if test_set.synthetic:
    st.info(
        f"This run trained on the **synthetic** stand-in set (seed {test_set.seed}), so it is "
        f"tested on that set's {len(data.test_labels):,} test images, not on CIFAR-10.",
        icon=":material/science:",
    )
data_key = f"synthetic:{test_set.subset}:{test_set.seed}" if test_set.synthetic else data.root
_results(run, data, data_key)
_data(data)
