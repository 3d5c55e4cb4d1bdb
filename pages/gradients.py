"""Gradient flow: plain vs residual, side by side, measured on one batch."""

from __future__ import annotations

import streamlit as st

from pages import _class, _ui
from resnet_core import ArchSpec, SpecError
from resnet_core.analysis.measure import (
    IMAGENET_SIDE,
    imagenet_batch,
    imagenet_batch_note,
    measure_net,
    sample_batch,
)
from resnet_core.analysis.probes import grad_ratio
from resnet_core.common.device import memory_budget
from resnet_core.nets.pretrained import IMAGENET, WeightsError
from resnet_core.nets.size import GRADIENT_MULT_ADDS, WorkTooBig, check_fits, check_server_work
from resnet_core.nets.spec import resolve_spec, spec_label
from resnet_core.training import runs
from resnet_core.training.data import DatasetNotFound, cifar10_layout
from resnet_core.views.charts import layer_norms_chart, per_layer_long
from resnet_core.views.explain import (
    INIT_RESPONSES,
    gradient_sentence,
    gradient_story,
    ratio_spread_sentence,
    response_sentence,
    sample_text,
)
from resnet_core.views.lecture import responses_sample

_ui.require_router()

DEPTHS = [6 * n + 2 for n in range(3, 19)]  # 20, 26, ..., 110: the CIFAR ResNets of He et al. 4.2
WEIGHTS = ["random init", "ImageNet weights (torchvision)"]  # for an -imagenet current net


@st.cache_data(max_entries=32, show_spinner=False)
def measure(
    spec_json: str,
    source: str,
    data_dir: str,
    batch: int,
    seed: int,
    run: str = "",
    weights: str = "",
    stamp: float = 0.0,
):
    """Gradient norms and responses of one net on one batch (cached: same inputs, same numbers).

    `weights` (with its file's `stamp`) picks ImageNet images for an -imagenet preset:
    WEIGHTS[0] at init, else a weights file or IMAGENET (torchvision's cache)."""
    images = labels = None
    if source == "CIFAR-10":
        data = _ui.cifar10(data_dir)
        images, labels = data.test_images, data.test_labels
    spec = ArchSpec.from_json(spec_json)
    if weights:
        inputs, targets = imagenet_batch(images, labels, batch, seed)
        state = None if weights == WEIGHTS[0] else _ui.imagenet_state(spec_label(spec), weights)
    else:
        inputs, targets = sample_batch(images, labels, batch, seed)
        state = _ui.run_model(run)[1] if run else None
    # forward and backward (about twice the forward's work) on the whole batch
    check_server_work(spec, inputs.shape[-1], 3 * len(inputs), GRADIENT_MULT_ADDS)
    return measure_net(spec, inputs, targets, seed, state)


def _weights_controls(preset: str) -> str:
    """Weights for an -imagenet current net: '' (random init), a file path, or IMAGENET."""
    row = st.columns([2, 4, 2], vertical_alignment="bottom")
    if row[0].radio("Weights", WEIGHTS, key="grad_weights") == WEIGHTS[0]:
        return ""
    if not _class.person().in_charge:  # a student names no files on the server's disk
        row[1].caption("The ImageNet weights in this server's torchvision cache.")
        return IMAGENET
    path = row[1].text_input(
        "Weights file (a torchvision state dict, .pth)",
        key="grad_weights_file",
        placeholder="empty: torchvision's cache",
    )
    size = _ui.download_size(preset)
    if row[2].button("Download from torchvision", key="grad_weights_fetch", help=size):
        try:
            _ui.fetch_imagenet_weights(preset)
        except WeightsError as error:
            _ui.error_box(error)
    return path.strip() or IMAGENET


def _imagenet_pair(spec: ArchSpec, source: str) -> dict[str, tuple[ArchSpec, str, str]]:
    """An -imagenet preset at init and carrying ImageNet weights (none if they fail to load)."""
    label = spec_label(spec)
    try:
        batch = int(st.session_state["grad_batch"])
        check_fits(spec, batch, IMAGENET_SIDE, memory_budget(), "this machine")
        _ui.imagenet_state(label, source)
    except SpecError as error:
        _ui.error_box(error)
        return {}
    except WeightsError as error:
        _ui.error_box(error, "Measuring needs the weights: give a file, or download them.")
        return {}
    return {f"{label} at init": (spec, "", WEIGHTS[0]), f"{label} pretrained": (spec, "", source)}


def _pairs() -> dict[str, tuple[ArchSpec, str, str]]:
    """The nets to compare, name -> (spec, trained run id or '', ImageNet weights or '')."""
    mode = st.session_state.get("grad_mode")
    if mode == "Current net: skips off vs on":
        spec = _ui.current_spec()
        weights = st.session_state.get("grad_weights_source", "")
        if weights:
            return _imagenet_pair(spec, weights)
        base = spec_label(spec.replace(residual=True))
        return {
            f"{base} without skips": (spec.replace(residual=False), "", ""),
            f"{base} with skips": (spec.replace(residual=True), "", ""),
        }
    if mode == "A trained run":
        run = st.session_state.get("grad_run")
        if not run:
            return {}
        try:
            spec, _ = _ui.run_model(run)
        except runs.RunError as error:
            _ui.error_box(error, "Pick another run; this one has no readable checkpoint yet.")
            return {}
        label = spec_label(spec)
        return {f"{label} at init": (spec, "", ""), f"{label} trained": (spec, run, "")}
    depth = st.session_state.get("grad_depth", 56)
    depths = ((depth - 2) // 6,) * 3
    return {
        f"plain{depth}": (resolve_spec("plain20").replace(depths=depths), "", ""),
        f"resnet{depth}": (resolve_spec("resnet20").replace(depths=depths), "", ""),
    }


def _shipped_pair() -> tuple[dict, dict[str, bool], str]:
    """Fig. 7 of the shipped trained pair nearest the chosen depth (20 or 56 layers)."""
    depth = 20 if st.session_state.get("grad_depth", 56) < 38 else 56
    frame = _ui.shipped_responses()
    names = [f"plain{depth}", f"resnet{depth}"]
    frames = {n: frame[frame["net"] == n].reset_index(drop=True) for n in names}
    note = (
        f"{INIT_RESPONSES} Shown instead: the shipped trained plain{depth} and resnet{depth} "
        f"(checkpoints/demo/degradation), BatchNorm in eval mode, on "
        f"{sample_text(responses_sample())}."
    )
    return frames, {n: n.startswith("resnet") for n in names}, note


def _fig7(responses: dict, residual: dict[str, bool], images: str) -> None:
    """He et al. Fig. 7 for the trained nets on the page, else for the shipped trained pair."""
    trained = {name: frame for name, frame in responses.items() if frame is not None}
    if trained:
        kinds = {name: residual[name] for name in trained}
        note = (
            f"Measured on {', '.join(trained)} with BatchNorm in eval mode (running "
            f"statistics), on the same images as the gradients: {images}."
        )
    else:
        trained, kinds, note = _shipped_pair()
    long_std = per_layer_long(trained, "std")
    chart = layer_norms_chart(
        long_std,
        "std",
        "Layer responses of trained nets (He et al. Fig. 7)",
        "std of BatchNorm output",
        residual=kinds,
    )
    _ui.show_chart(chart, "layer-responses", long_std)
    st.caption(note)
    st.markdown(response_sentence(trained, kinds))


st.title("Gradient flow: plain vs residual")
st.caption(
    "One forward and backward pass on one batch, at initialisation unless a trained run or "
    "ImageNet weights are chosen, with BatchNorm in training mode (batch statistics) as "
    "during training. The numbers below are measured now, not quoted from a book."
)
controls = st.columns([3, 3, 2, 1, 1])
trained_runs = _ui.all_runs()  # path -> label, yours and the shipped demo runs
runs_available = bool(trained_runs)
controls[0].radio(
    "Compare",
    ["Preset pair", "Current net: skips off vs on", "A trained run"],
    key="grad_mode",
    horizontal=False,
)
mode = st.session_state["grad_mode"]
if mode == "Preset pair":
    controls[1].select_slider("Depth (layers)", DEPTHS, value=56, key="grad_depth")
elif mode == "A trained run":
    st.session_state.setdefault("grad_run", None)  # the Runs page may have chosen one
    controls[1].selectbox(
        "Run",
        list(trained_runs),
        key="grad_run",
        format_func=lambda p: trained_runs.get(p, p),
        placeholder="pick a run" if trained_runs else "no runs yet",
    )
else:
    controls[1].markdown(f"Current net: **{_ui.current_label()}**")
st.session_state["grad_weights_source"] = (
    _weights_controls(_ui.current_label())
    if mode == "Current net: skips off vs on" and _ui.current_label().endswith("-imagenet")
    else ""
)
found = cifar10_layout(_ui.data_dir()) is not None
controls[2].radio(
    "Batch",
    ["CIFAR-10", "random"] if found else ["random"],
    key="grad_source",
    help=None if found else "CIFAR-10 not found: see the sidebar",
)
controls[3].number_input("Seed", 0, 10_000, 0, key="grad_seed")
controls[4].selectbox("Batch size", [8, 16, 32, 64], index=1, key="grad_batch")
show_bn = st.toggle("Include BatchNorm layers in the gradient chart", key="grad_bn")

nets = _pairs()
if not nets:
    if mode == "A trained run" and not runs_available:
        st.info("No trained runs yet: start one on the Train page, or compare a preset pair.")
    st.stop()
grads, responses = {}, {}
progress = st.progress(0.0, text="Measuring ...")
source = st.session_state["grad_source"]
batch, seed = int(st.session_state["grad_batch"]), int(st.session_state["grad_seed"])
for done, (name, (spec, run, weights)) in enumerate(nets.items()):
    progress.progress(done / len(nets), text=f"Measuring {name} (forward + backward) ...")
    stamp = _ui.weights_stamp(spec_label(spec), weights) if weights not in ("", WEIGHTS[0]) else 0.0
    args = (str(_ui.data_dir()), batch, seed, run, weights, stamp)
    try:
        result = measure(spec.to_json(), source, *args)
    except WorkTooBig as error:
        progress.empty()
        _ui.error_box(error, "Pick a smaller batch size.")
        st.stop()
    except DatasetNotFound as error:  # a damaged data folder: say which file, use noise
        _ui.error_box(error, "Measured on a random batch instead.")
        source = "random"
        result = measure(spec.to_json(), source, *args)
    grads[name], responses[name] = result
progress.empty()
residual = {name: spec.residual for name, (spec, *_) in nets.items()}
pretrained = next((w for *_, w in nets.values() if w not in ("", WEIGHTS[0])), "")
images = imagenet_batch_note(source, batch) if pretrained else f"{batch} {source} images"

names = list(nets)
ratios = {name: grad_ratio(frame) for name, frame in grads.items()}
st.markdown(gradient_sentence(grads))
plain = [n for n in names if not residual[n]]
skips = [n for n in names if residual[n]]
if plain and skips:
    st.markdown(gradient_story(plain[0], ratios[plain[0]], skips[0], ratios[skips[0]]))
    pair = {plain[0]: [ratios[plain[0]]], skips[0]: [ratios[skips[0]]]}
    st.caption(
        f"{ratio_spread_sentence(pair, [seed])} Change the seed to see how much it moves; "
        "the Lecture's slide 4 states the spread over three seeds for depth 56."
    )

left, right = st.columns(2)
kinds = ("conv", "linear", "bn") if show_bn else ("conv", "linear")
shown = {n: f[f["kind"].isin(kinds)] for n, f in grads.items()}
long = per_layer_long(shown, "grad_norm")
with left:
    _ui.show_chart(
        layer_norms_chart(
            long,
            "grad_norm",
            "Gradient norm per layer (log scale)",
            "weight-gradient norm",
            residual=residual,
        ),
        "gradient-norms",
        long,
    )
    if pretrained:
        st.caption(f"Both nets measured on {images}. {_ui.weights_origin(pretrained)}")
with right:
    _fig7(responses, residual, images)
