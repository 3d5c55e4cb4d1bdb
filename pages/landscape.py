"""Loss landscape: the training loss around trained weights, plain vs residual (Li et al. 2018).
The shipped measurements show at once; a coarse 1-D slice of any run can be measured live."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages import _ui
from resnet_core.analysis.landscape import coefficients
from resnet_core.training.data import Cifar10, DatasetNotFound
from resnet_core.training.runs import RunError, run_info
from resnet_core.views import landscape as views
from resnet_core.views.explain import fmt_seconds

_ui.require_router()

POINTS = [5, 9, 11, 21]  # live slice: points over [-1, 1]
IMAGES = [32, 64, 128, 256]  # live slice: training images per point

INTRO = (
    "Each curve and map shows a trained net's **training loss** (cross-entropy) when its "
    "weights are moved away from where training left them: to θ + a·d₁ along one random "
    "direction, or θ + a·d₁ + b·d₂ over a grid. Following [Li et al. 2018, *Visualizing the "
    f"Loss Landscape of Neural Nets*]({views.PAPER_URL}), each filter of a random direction is "
    "rescaled to the norm of the weight filter it moves (*filter normalisation*), so a = 1 "
    'means "change every filter by 100 % of its size" in every net; without it, nets whose '
    "weights differ in scale could not be compared. BatchNorm parameters and biases stay put "
    "and BatchNorm uses its running statistics. The marker + and a = 0 are the trained weights."
)


@st.cache_data(show_spinner=False)
def _shipped() -> views.Shipped | None:
    return views.read_shipped()


@st.cache_data(max_entries=2048, show_spinner=False)
def _point(
    run_path: str, mtime: float, data_key: str, images: int, seed: int, alpha: float, _data: Cifar10
) -> tuple[float, float]:
    """(loss, accuracy) of one run at one step a, cached per run, checkpoint time, data
    (`data_key` names `_data`, which is not hashed) and settings."""
    spec, state = _ui.run_model(run_path)
    inputs, targets = views.training_batch(_data, views.check_run(run_path), images, seed)
    return views.point_loss(spec, state, inputs, targets, seed, (alpha,))


def _record_caption(record: dict) -> str:
    settings, hardware = record["settings"], record["hardware"]
    took = ", ".join(f"{net} {fmt_seconds(s)}" for net, s in record["seconds"].items())
    return (
        f"{settings['images']} training images (a fixed pick, seed {settings['seed']}), "
        f"{settings['grid']} points per axis over [-1, 1]; measured on {hardware['machine']} "
        f"({hardware['cpu_count']} cores, torch {record['torch']}) on {record['date'][:10]}: "
        f"{took}. Command: `{record['command']}`"
    )


def shipped_section(shipped: views.Shipped) -> None:
    """The degradation nets' slices and surfaces, measured once and shipped."""
    st.subheader("The degradation nets, measured once")
    slices, surfaces = shipped.slices, shipped.surfaces
    st.markdown(f"{views.rise_sentence(slices, 1.0)} {views.rise_verdict(slices, 1.0)}")
    st.markdown(views.rise_sentence(slices, 0.5))
    _ui.show_chart(views.slice_chart(slices), "landscape-slices", slices)
    st.caption(
        "Above the dotted line a net does worse than a uniform guess (loss ln 10 ≈ 2.3): how far "
        "above says how confidently wrong it is. " + _record_caption(shipped.slices_record)
    )
    st.markdown(f"{views.roughness_sentence(surfaces)} {views.roughness_verdict(surfaces)}")
    _ui.show_chart(views.surface_chart(surfaces), "landscape-surfaces", surfaces)
    st.caption(
        "Both maps share one colour scale: each colour is one band of training loss, so equal "
        "colours mean equal loss in both nets. Curvature: the mean size of the second "
        "difference of log loss between neighbouring grid points, divided by the map's range "
        "of log loss. " + _record_caption(shipped.surfaces_record)
    )


def _data_or_say_why() -> Cifar10 | None:
    try:
        return _ui.cifar10(str(_ui.data_dir()))
    except DatasetNotFound as error:
        st.info(
            "The live slice measures the training loss on CIFAR-10, which is not available here. "
            f"Name the data folder in the sidebar (or download it there).\n\n{error}",
            icon=":material/folder_off:",
        )
        return None


def _measure(run: str, data: Cifar10, points: int, images: int, seed: int) -> pd.DataFrame:
    """The slice, one cached point at a time, with a progress bar that moves per point."""
    mtime = (Path(run) / "best.pt").stat().st_mtime
    steps = coefficients(points)
    progress = st.progress(0.0, text="Measuring ...")
    rows = []
    for done, alpha in enumerate(steps):
        progress.progress(done / points, text=f"Point {done + 1} of {points}: a = {alpha:+.2f}")
        loss, accuracy = _point(run, mtime, data.root, images, seed, alpha, data)
        rows.append({"alpha": alpha, "loss": loss, "accuracy": accuracy})
    progress.empty()
    spec, _ = _ui.run_model(run)
    frame = pd.DataFrame(rows)
    frame.insert(0, "net", run_info(run).model)
    frame.insert(1, "residual", bool(spec.residual))
    return frame


def live_section() -> None:
    """A coarse 1-D slice of any run with weights, measured now on this machine."""
    st.subheader("Measure a run now")
    st.caption(
        "A coarse 1-D slice along one filter-normalised direction, computed here point by point "
        f"({_ui.device_name()}; the CPU does it in seconds for the small nets). Each point is kept, "
        "so measuring again is instant."
    )
    run = _ui.pick_trained_run("landscape_run", "measured")
    if run is None:
        return
    try:
        views.check_run(run)
    except (RunError, views.LandscapeError) as error:
        st.info(f"{error}", icon=":material/info:")
        return
    data = _data_or_say_why()
    if data is None:
        return
    controls = st.columns([2, 2, 2, 3], vertical_alignment="bottom")
    points = controls[0].selectbox("Points", POINTS, index=1, key="landscape_points")
    images = controls[1].selectbox("Training images", IMAGES, index=1, key="landscape_images")
    seed = controls[2].number_input("Seed", 0, 10_000, 0, key="landscape_seed")
    wanted = (run, points, images, int(seed))
    if controls[3].button("Measure", type="primary", icon=":material/play_arrow:"):
        st.session_state["landscape_wanted"] = wanted
    if st.session_state.get("landscape_wanted") != wanted:
        return
    try:
        frame = _measure(run, data, points, images, int(seed))
    except (RunError, RuntimeError) as error:
        _ui.error_box(error, "Pick another run.")
        return
    st.markdown(views.rise_sentence(frame, 1.0))
    _ui.show_chart(views.slice_chart(frame), f"landscape-{Path(run).name}", frame)


st.title("Loss landscape")
st.markdown(INTRO)
shipped = _shipped()
if shipped is None:
    st.info(
        "This checkout has no shipped landscape results (checkpoints/demo/landscape). Make them "
        "with `python -m resnet_core landscape RUN_DIR --out FILE.csv`, or measure a run below."
    )
else:
    shipped_section(shipped)
live_section()
