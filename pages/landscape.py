"""Loss landscape: the training loss around trained weights, plain vs residual (Li et al. 2018).
The shipped measurements show at once; a coarse 1-D slice of any run can be measured live."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages import _ui
from resnet_core.analysis.landscape import coefficients
from resnet_core.studies import landscape as study
from resnet_core.training.data import Cifar10, DatasetNotFound
from resnet_core.training.runs import RunError, run_info
from resnet_core.views import landscape as views
from resnet_core.views.explain import fmt_seconds

_ui.require_router()

POINTS = [5, 9, 11, 21]  # live slice: points over [-1, 1]
IMAGES = [32, 64, 128, 256]  # live slice: training images per point

INTRO = (
    "Each curve and map shows a trained net's **training loss** (cross-entropy) and accuracy "
    "when its weights are moved away from where training left them: to θ + a·d₁ along a random "
    "direction, or θ + a·d₁ + b·d₂ over a grid. Following [Li et al. 2018, *Visualizing the "
    f"Loss Landscape of Neural Nets*]({study.PAPER_URL}), each filter of a random direction is "
    "rescaled to the norm of the weight filter it moves (*filter normalisation*), so a = 1 "
    'means "change every filter by 100 % of its size" in every net. BatchNorm parameters and '
    "biases stay put. **At every point the BatchNorm statistics are recomputed** on other "
    "training images, so the loss belongs to the moved weights; the dashed curves keep the "
    "trained weights' statistics instead, to show how much that alone changes the picture. "
    "The marker + and a = 0 are the trained weights."
)


@st.cache_data(show_spinner=False)
def _shipped() -> study.Shipped | None:
    return study.read_shipped()


@st.cache_data(max_entries=2048, show_spinner=False)
def _point(
    run_path: str,
    mtime: float,
    data_key: str,
    images: int,
    seed: int,
    alpha: float,
    bn: str,
    _data: Cifar10,
) -> tuple[float, float]:
    """(loss, accuracy) of one run at one step a with BatchNorm statistics `bn`, cached per
    run, checkpoint time, data (`data_key` names `_data`, which is not hashed) and settings."""
    spec, state = _ui.run_model(run_path)
    sample = study.training_sample(_data, study.check_run(run_path), images, seed, images)
    return study.point_loss(spec, state, sample, seed, (alpha,), bn)


def _record_caption(record: dict) -> str:
    settings, hardware = record["settings"], record["hardware"]
    took = ", ".join(f"{net} {fmt_seconds(s)}" for net, s in record["seconds"].items())
    seeds = settings.get("seeds", 1)
    directions = (
        f"{seeds} sets of directions (seeds {settings['seed']}-{settings['seed'] + seeds - 1})"
    )
    return (
        f"{settings['images']} training images drawn evenly across the classes "
        f"(seed {settings['seed']}, recorded in sample.json), BatchNorm statistics recomputed on "
        f"{settings.get('bn_images', '?')} others; "
        f"{directions if seeds > 1 else 'one set of directions'}; {settings['grid']} points per "
        f"axis over [-1, 1]; measured on {hardware['machine']} "
        f"({hardware['cpu_count']} cores, torch {record['torch']}) on {record['date'][:10]}: "
        f"{took}. Command: `{record['command']}`"
    )


def _pick_nets(slices: pd.DataFrame) -> pd.DataFrame:
    nets = list(dict.fromkeys(slices["net"]))
    deepest = [n for n in nets if n.endswith("56")] or nets
    chosen = st.multiselect("Nets", nets, default=deepest, key="landscape_nets")
    return slices[slices["net"].isin(chosen)] if chosen else slices


def shipped_section(shipped: study.Shipped) -> None:
    """The degradation nets' slices and surfaces, measured once and shipped."""
    st.subheader("The degradation nets, measured once")
    slices = _pick_nets(shipped.slices)
    for distance in (0.5, 1.0):
        st.markdown(
            f"{views.slice_sentence(slices, distance)} {views.slice_verdict(slices, distance)}"
        )
    left, right = st.columns(2)
    with left:
        _ui.show_chart(views.slice_chart(slices, "accuracy"), "landscape-slices-accuracy", slices)
    with right:
        _ui.show_chart(views.slice_chart(slices, "loss"), "landscape-slices-loss", slices)
    st.markdown(views.artefact_sentence(slices, 1.0))
    st.caption(
        "Solid: mean over the sets of directions, band: their min-max. Beyond the dotted line "
        "a net does no better than a uniform guess (loss ln 10 ≈ 2.3, accuracy 10 %). "
        + _record_caption(shipped.slices_record)
    )
    surfaces = shipped.surfaces
    st.markdown(f"{views.roughness_sentence(surfaces)} {views.roughness_verdict(surfaces)}")
    _ui.show_chart(views.surface_chart(surfaces), "landscape-surfaces", surfaces)
    st.caption(
        "Both maps share one colour scale: each colour is one band of training loss, so equal "
        "colours mean equal loss in both nets. Curvature: the mean size of the second "
        "difference of log loss between neighbouring grid points. A local minimum counts only "
        "where the loss is well below chance. " + _record_caption(shipped.surfaces_record)
    )


def _data_or_say_why() -> Cifar10 | None:
    try:
        return _ui.cifar10(str(_ui.data_dir()))
    except DatasetNotFound as error:
        st.info(
            "The live slice measures the training loss on CIFAR-10, which is not available here. "
            f"Name the data folder in the sidebar (or download it there).\n\n{_ui.shown(error)}",
            icon=":material/folder_off:",
        )
        return None


def _measure(run: str, data: Cifar10, points: int, images: int, seed: int) -> pd.DataFrame:
    """The slice with recomputed and with stale BatchNorm statistics, one cached point at a
    time, with a progress bar that moves per point."""
    mtime = (Path(run) / "best.pt").stat().st_mtime
    steps = coefficients(points)
    progress = st.progress(0.0, text="Measuring ...")
    rows, total = [], 2 * points
    for bn in study.BN_MODES:
        for alpha in steps:
            text = f"Point {len(rows) + 1} of {total}: a = {alpha:+.2f}, {bn} statistics"
            progress.progress(len(rows) / total, text=text)
            loss, accuracy = _point(run, mtime, data.root, images, seed, alpha, bn, data)
            rows.append(
                {"seed": seed, "bn": bn, "alpha": alpha, "loss": loss, "accuracy": accuracy}
            )
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
        "A coarse 1-D slice along one filter-normalised direction, with BatchNorm statistics "
        "recomputed at each point and, dashed, without; computed here point by point "
        f"({_ui.device_name()}; the CPU does it in seconds for the small nets). Each point is kept, "
        "so measuring again is instant."
    )
    run = _ui.pick_trained_run("landscape_run", "measured")
    if run is None:
        return
    try:
        study.check_run(run)
    except (RunError, study.LandscapeError) as error:
        st.info(_ui.shown(error), icon=":material/info:")
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
    st.markdown(f"{views.slice_sentence(frame, 1.0)} {views.artefact_sentence(frame, 1.0)}")
    left, right = st.columns(2)
    with left:
        _ui.show_chart(
            views.slice_chart(frame, "accuracy"), f"landscape-{Path(run).name}-accuracy", frame
        )
    with right:
        _ui.show_chart(views.slice_chart(frame, "loss"), f"landscape-{Path(run).name}-loss", frame)


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
