"""Lesions: delete blocks of a trained net at test time and see what is left of its accuracy
(Veit et al. 2016). The shipped degradation nets are shown at once; any run with weights can
be lesioned on demand."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages import _ui
from resnet_core.analysis.lesion import LesionError
from resnet_core.common.device import resolve_device
from resnet_core.studies import lesion as study
from resnet_core.studies.datasets import run_test_set
from resnet_core.training.data import Cifar10
from resnet_core.training.runs import RunError
from resnet_core.views import lesion as views

_ui.require_router()

PAPER = "https://arxiv.org/abs/1605.06431"
IMAGE_CHOICES = (500, 1000, 2000)
DRAW_CHOICES = (0, 3, 5)


@st.cache_data(max_entries=16, show_spinner=False)
def _lesion(
    run: str, mtime: float, images: int, draws: int, data_key: str, _data: Cifar10
) -> study.LesionResult:
    """A run's lesion study, cached per run, checkpoint time, images, draws and data
    (`data_key` names `_data`, which is not hashed). The progress bar lives inside, so a
    cached call replays it already finished."""
    bar = st.progress(0.0, text="Deleting blocks ...")

    def report(done: int, total: int, sentence: str) -> None:
        bar.progress(done / total, text=f"{sentence.capitalize()} ({done} of {total})")

    device = resolve_device("auto")  # a GPU, where there is one, takes seconds
    result = study.run_lesion(run, _data, images, draws, device=device, on_progress=report)
    bar.empty()
    return result


def _charts(result: study.LesionResult, name: str) -> None:
    """The single-deletion bars and the k-deletion curve, each with its sentence."""
    large = _ui.large_fonts()
    st.subheader("One block deleted")
    _ui.show_chart(views.single_chart(result.single, large), f"{name}-single", result.single)
    st.markdown(views.single_story(result.single))
    if result.random["k"].max() < 1:
        return
    st.subheader("k blocks deleted at random")
    summary = study.random_summary(result.random)
    _ui.show_chart(views.random_chart(result.random, large), f"{name}-random", summary)
    st.markdown(views.random_story(result.random))


def _shipped() -> None:
    """The degradation nets' lesions, computed once and shipped: shown without waiting."""
    result = study.shipped_results()
    if result is None:
        st.info(
            "The shipped lesion results (checkpoints/demo/lesion/) are missing; make them with "
            "`python -m resnet_core lesion RUN_DIR ... --out checkpoints/demo/lesion/lesion.csv`.",
            icon=":material/folder_off:",
        )
        return
    pairs = views.depth_pairs(result.nets)
    depth = st.segmented_control("Nets", list(pairs), key="lesion_depth", default=list(pairs)[-1])
    nets = pairs[depth or list(pairs)[-1]]
    _charts(study.select(result, nets), "lesion-" + "-".join(nets))
    record = result.record
    st.caption(
        f"Measured on {record.get('images', '?')} CIFAR-10 test images "
        f"({record.get('sample', '')}), {record.get('draws', '?')} random draws per k, on "
        f"{record.get('device', 'a CPU')}, {str(record.get('date', ''))[:10]}. Bars: accuracy "
        "with that block deleted; dashed line: the intact net; dotted line: chance. Band: "
        "the lowest to the highest draw."
    )


def _your_run() -> None:
    """Lesion any run with weights, on demand, with progress; results are kept per run."""
    run = _ui.pick_trained_run("lesion_run", "lesioned")
    if run is None:
        return
    best = Path(run) / "best.pt"
    if not best.is_file():
        st.info(
            "This run saved no weights (best.pt), so there is nothing to delete blocks from: a "
            "run saves them after its first epoch. Pick another run.",
            icon=":material/hide_image:",
        )
        return
    left, right = st.columns(2)
    images = left.segmented_control(
        "Test images", IMAGE_CHOICES, key="lesion_images", default=IMAGE_CHOICES[0]
    )
    draws = right.segmented_control(
        "Random draws per k",
        DRAW_CHOICES,
        key="lesion_draws",
        default=DRAW_CHOICES[1],
        help="0: single deletions only (fastest)",
    )
    images, draws = images or IMAGE_CHOICES[0], DRAW_CHOICES[1] if draws is None else draws
    key = (run, best.stat().st_mtime, images, draws)
    done = st.session_state.setdefault("lesion_done", set())
    if key not in done and not st.button("Delete blocks", icon=":material/content_cut:"):
        st.caption(
            "Each deletion is one pass over the test images on this machine: seconds per block "
            "for resnet20 on 500 images, minutes for a 56-layer net on 2,000."
        )
        return
    try:
        test_set = run_test_set(run)
    except RunError as error:
        st.info(f"This run cannot be tested: {_ui.shown(error)}", icon=":material/help:")
        return
    data = _ui.run_dataset(test_set, say_synthetic=True)
    if data is None:
        return
    data_key = f"synthetic:{test_set.subset}:{test_set.seed}" if test_set.synthetic else data.root
    try:
        result = _lesion(run, key[1], images, draws, data_key, data)
    except LesionError as error:
        st.info(f"This net cannot be lesioned: {_ui.shown(error)}", icon=":material/block:")
        return
    except (RunError, RuntimeError) as error:
        _ui.error_box(error, "Pick another run.")
        return
    done.add(key)
    _charts(result, f"lesion-{Path(run).name}")


st.title("Lesions")
st.markdown(
    "A residual block adds a correction to what its shortcut carries: out = relu(x + F(x)). "
    "Here blocks of a **trained** net are deleted at test time, with no retraining: a residual "
    "block loses F(x) and passes x on through its shortcut; a block of the plain twin becomes "
    "the identity (the blocks where the shape changes cannot go). Veit, Wilber and Belongie "
    f"([2016]({PAPER})) found that a ResNet hardly notices losing any one block and gets worse "
    "smoothly as more go, while a plain net collapses to chance after one. Their reading: a "
    "residual net is not one deep pipeline but an ensemble of many paths of different "
    "lengths, most of them short, so no single block is essential."
)
_shipped()
st.header("Lesion a run")
_your_run()
