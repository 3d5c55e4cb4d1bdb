"""Streamlit glue shared by the pages: the current net (kept in the URL), cached calls into
resnet_core, the sidebar, and chart/table rendering with PNG/SVG/CSV downloads.

Everything heavy lives in resnet_core; this module only decides what to cache and how to show it.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from pages import _class
from resnet_core import ArchSpec, SpecError, build_model, trace_blocks, trace_shapes
from resnet_core.common.device import machine_summary
from resnet_core.common.env import DATA_ENV
from resnet_core.common.errors import page_message
from resnet_core.common.files import read_json
from resnet_core.common.text import escape_markdown, hide_paths
from resnet_core.nets.onnx_export import SERVER_EXPORT_BYTES, input_side, to_onnx_apart
from resnet_core.nets.pretrained import (
    IMAGENET,
    pretrained_model,
    torchvision_arch,
    torchvision_cache_path,
    torchvision_download_mb,
    torchvision_weights,
)
from resnet_core.nets.size import check_buildable, check_server_work
from resnet_core.nets.spec import PRESETS, resolve_spec, spec_label
from resnet_core.studies.datasets import TestSet
from resnet_core.training import jobs, runs
from resnet_core.training.class_rules import NotYours, check_change, may_change, owner_of_run
from resnet_core.training.data import Cifar10, DatasetNotFound, load_cifar10, load_dataset
from resnet_core.training.events import Event
from resnet_core.training.experiments import shipped_root
from resnet_core.views import charts, lecture
from resnet_core.views.lockstep import (
    METRIC_CHARTS,
    LockstepFrames,
    barely_trained_sentence,
    layer_grad_frame,
    layer_grad_heatmap,
    lockstep_chart,
)

_ROUTER = threading.local()  # set while app.py's router runs a page, per script thread
_LOG = logging.getLogger("resnet_explorer.pages")


@contextmanager
def routed() -> Iterator[None]:
    """app.py runs its page inside this, so `require_router` knows the router is running it,
    and an error no page caught is one line on the page (the traceback goes to the log)."""
    _ROUTER.active = True
    try:
        yield
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, no traceback
        _LOG.exception("a page stopped")  # the details go to the server's log only
        st.error(shown(page_message(error)), icon=":material/error:")
    finally:
        _ROUTER.active = False


def require_router() -> None:
    """Call first in every page (before drawing anything): runs the page inside app.py's router.

    A folder named pages/ makes Streamlit run a page file on its own (no router, no
    sidebar) until app.py has called st.navigation: on a freshly started server, and in
    every AppTest run. Then run app.py here, which calls st.navigation, draws the sidebar
    and runs this page, and stop the outer run. No rerun, so no click is lost.
    """
    if getattr(_ROUTER, "active", False):
        return
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()


def navigation(sections: dict[str, list]) -> None:
    """The sidebar's page links, under their section headings (st.navigation itself is hidden,
    so a fresh server never shows Streamlit's own list of the files in pages/)."""
    with st.sidebar:
        for section, pages in sections.items():
            st.markdown(f"**{section}**")
            for page in pages:
                st.page_link(page)
        st.divider()


NET_KEY = "net"  # session_state and query-param key of the current net
DEFAULT_NET = "resnet20"


# The current net -------------------------------------------------------------------------
def net_to_param(spec: ArchSpec) -> str:
    """A preset's name, or the spec as compact JSON (what goes in the URL)."""
    label = spec_label(spec)
    return label if label in PRESETS else json.dumps(spec.to_dict(), separators=(",", ":"))


def net_from_param(text: str) -> ArchSpec:
    """Inverse of `net_to_param`; raises SpecError on anything that is not a valid net."""
    text = text.strip()
    spec = ArchSpec.from_json(text) if text.startswith("{") else resolve_spec(text)
    check_buildable(spec)
    check_server_work(spec, input_side(spec))  # a shared link never costs the server minutes
    return spec


def sync_net_with_url() -> None:
    """Adopt a net named in the URL (a shared link) once, then keep the URL up to date."""
    wanted = st.query_params.get(NET_KEY)
    if wanted and wanted != st.session_state.get("_net_from_url"):
        st.session_state["_net_from_url"] = wanted
        try:
            st.session_state[NET_KEY] = net_to_param(net_from_param(wanted))
        except SpecError as error:
            st.warning(
                f"The link names a net that cannot be built ({shown(error)}); showing "
                f"{current_label()}."
            )
    st.session_state.setdefault(NET_KEY, DEFAULT_NET)
    st.query_params[NET_KEY] = st.session_state[NET_KEY]
    st.session_state["_net_from_url"] = st.session_state[NET_KEY]


def set_net(spec: ArchSpec) -> None:
    st.session_state[NET_KEY] = net_to_param(spec)
    st.session_state["_net_from_url"] = st.session_state[NET_KEY]
    st.query_params[NET_KEY] = st.session_state[NET_KEY]


def current_spec() -> ArchSpec:
    try:
        return net_from_param(st.session_state.get(NET_KEY, DEFAULT_NET))
    except SpecError:
        return resolve_spec(DEFAULT_NET)


def current_label() -> str:
    return spec_label(current_spec())


CURRENT_NET = "current net"  # the Train page's model choice that stands for the Build page's net
TRAIN_MODEL_KEY = "train_f_own_model"  # the Train page's own-settings model box


def model_choice() -> str:
    """The Train page's model choice for the current net: its preset name, or
    'current net: <label>' for a custom one."""
    label = current_label()
    return label if label in PRESETS else f"{CURRENT_NET}: {label}"


def train_current_net() -> None:
    """Open the Train page with the current net chosen in its own-settings form."""
    st.session_state[TRAIN_MODEL_KEY] = model_choice()
    st.session_state["train_recipe"] = None  # the form with the model box, not a ready choice
    st.switch_page("pages/train.py")


def default_side(spec: ArchSpec) -> int:
    """The input side a net is meant for (224 for ImageNet stems, else 32), or the smallest
    it can take when it downsamples more than that (a CIFAR-stem net with 7 or 8 stages)."""
    return input_side(spec)


# Cached calls into resnet_core (keyed by the spec's JSON, so equal nets share results) ----
@st.cache_data(max_entries=64, show_spinner=False)
def blocks_of(spec_json: str, side: int) -> pd.DataFrame:
    spec = ArchSpec.from_json(spec_json)
    return trace_blocks(build_model(spec), (1, spec.in_channels, side, side))


@st.cache_data(max_entries=64, show_spinner=False)
def shapes_of(spec_json: str, side: int) -> pd.DataFrame:
    spec = ArchSpec.from_json(spec_json)
    return trace_shapes(build_model(spec), (1, spec.in_channels, side, side))


@st.cache_data(show_spinner=False)
def shipped_responses() -> pd.DataFrame:
    """Fig. 7 of the shipped trained nets: read once per server, shared by every session."""
    return lecture.trained_responses()


@st.cache_data(max_entries=2, show_spinner=False)  # up to 240 MB each (ResNet-152)
def onnx_of(spec_json: str, side: int) -> bytes:
    """The net as an ONNX file (fresh initial weights); see `onnx_export.to_onnx`."""
    return to_onnx_apart(ArchSpec.from_json(spec_json), side, SERVER_EXPORT_BYTES)


# Environment -----------------------------------------------------------------------------
@st.cache_resource
def device_name() -> str:
    return machine_summary()


def data_dir() -> Path:
    if not _class.person().in_charge:  # a student's runs read the class's folder
        return Path(_class.limits().student_data_dir())
    return Path(st.session_state.get("data_dir") or os.environ.get(DATA_ENV) or "data")


@st.cache_resource(max_entries=2, show_spinner="Loading CIFAR-10 (decoded once, then cached) ...")
def cifar10(root: str) -> Cifar10:
    return load_cifar10(root)


@st.cache_resource(max_entries=4, show_spinner="Generating the synthetic dataset ...")
def synthetic(subset: int | None, seed: int) -> Cifar10:
    return load_dataset("synthetic", subset=subset, seed=seed)


def run_dataset(test_set: TestSet, say_synthetic: bool = False) -> Cifar10 | None:
    """The data a trained run is judged on (CIFAR-10 or its synthetic stand-in), or None
    after saying inline why it is not available; `say_synthetic` also says when it is the
    stand-in."""
    if test_set.synthetic:
        if say_synthetic:
            st.info(
                f"This run trained on the **synthetic** stand-in set (seed {test_set.seed}), so "
                "it is judged on that set's test images, not on CIFAR-10.",
                icon=":material/science:",
            )
        return synthetic(test_set.subset, test_set.seed)
    try:
        return cifar10(str(data_dir()))
    except DatasetNotFound as error:
        st.info(
            "This run was trained on CIFAR-10, which is not available here, so it cannot be "
            f"tested. Name the data folder in the sidebar (or download it there).\n\n{shown(error)}",
            icon=":material/folder_off:",
        )
        return None


def large_fonts() -> bool:
    return bool(st.session_state.get("large_fonts", False))


# Rendering -------------------------------------------------------------------------------
def show_chart(
    chart: alt.TopLevelMixin,
    name: str,
    data: pd.DataFrame | None = None,
    large: bool | None = None,
) -> None:
    """Render a chart (themed) with PNG / SVG / CSV downloads generated only when clicked.

    `large` picks projector-sized fonts; None follows the sidebar's switch.
    """
    chart = charts.themed(chart, large_fonts() if large is None else large)
    st.altair_chart(chart, width="stretch", theme=None)  # distinct colours on a projector
    downloads(name, chart=chart, data=data)


def show_table(frame: pd.DataFrame, name: str, **kwargs) -> None:
    """Render a table with a CSV download; big counts read as 40.6M rather than 40632064."""
    data = frame.data if isinstance(frame, Styler) else frame
    compact = {
        c: st.column_config.NumberColumn(format="compact")
        for c in ("params", "mult_adds")
        if c in data
    }
    st.dataframe(frame, width="stretch", hide_index=True, column_config=compact, **kwargs)
    downloads(name, data=data)


def downloads(
    name: str, chart: alt.TopLevelMixin | None = None, data: pd.DataFrame | None = None
) -> None:
    """A row of small download buttons; the files are made on click, not on every rerun."""
    files = []  # (suffix, mime type, bytes maker)
    if chart is not None:
        files += [
            ("png", "image/png", lambda: charts.to_png(chart)),
            ("svg", "image/svg+xml", lambda: charts.to_svg(chart)),
        ]
    if data is not None:
        files.append(("csv", "text/csv", lambda: charts.to_csv(data)))
    row = st.container(horizontal=True, gap="small")
    for suffix, mime, make in files:
        row.download_button(
            suffix.upper(),
            make,
            f"{name}.{suffix}",
            mime,
            key=f"dl_{suffix}_{name}",
            on_click="ignore",
            icon=":material/download:",
        )


def error_box(error: Exception, advice: str = "") -> None:
    """A user-caused problem as a message, never a traceback (`advice` is the app's own)."""
    st.error(shown(error) + (f"\n\n{advice}" if advice else ""), icon=":material/error:")


def shown(message: object) -> str:
    """A message for the page: Markdown-escaped (it may quote what someone typed or wrote
    into a file), and without server paths for a student."""
    text = str(message) if _class.person().in_charge else hide_paths(message)
    return escape_markdown(text)


# Training jobs and runs ------------------------------------------------------------------
@st.cache_resource
def job_queue() -> jobs.JobQueue:
    """The queue shared by every session of this server, with its runner thread started."""
    queue = jobs.JobQueue()
    jobs.JobRunner(queue).start()
    return queue


def runs_dir() -> Path:
    return job_queue().runs_dir


YOUR_RUNS = "Your runs"


def run_collections() -> dict[str, Path]:
    """Where runs are: this app's runs folder, then each experiment shipped in checkpoints/demo."""
    collections = {YOUR_RUNS: runs_dir()}
    root = shipped_root()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            title = str(read_json(folder / "experiment.json")["title"])
        except (TypeError, KeyError):  # missing, unreadable or not an experiment record
            continue
        collections[f"Shipped: {title}"] = folder
    return collections


def run_list(root: Path | None = None) -> list[runs.RunInfo]:
    """Every run in one collection (default: yours), newest first."""
    return runs.list_runs(root or runs_dir())


def all_runs() -> dict[str, str]:
    """run folder path -> a label naming its collection, over every collection (for pickers)."""
    labels = {}
    for name, root in run_collections().items():
        for info in runs.list_runs(root):
            labels[info.path] = (
                f"{info.model}: {info.id}" if name == YOUR_RUNS else f"{info.model}: {name}"
            )
    return labels


def run_events(run_path: str) -> list[Event]:
    """Every event a run has logged so far, typed."""
    return runs.read_events(run_path)


@st.cache_resource(max_entries=8, show_spinner="Loading the run's weights ...")
def _trained(run_path: str, mtime: float) -> tuple[ArchSpec, dict]:
    model, _ = runs.load_run(run_path, which="best")
    return model.spec, {k: v.contiguous() for k, v in model.state_dict().items()}


def run_model(run_path: str) -> tuple[ArchSpec, dict]:
    """(spec, trained weights) of a run's best checkpoint; raises runs.RunError if unreadable."""
    best = Path(run_path) / "best.pt"
    return _trained(run_path, best.stat().st_mtime if best.exists() else 0.0)


def may_change_run(run_id: str) -> bool:
    """Whether this session's person may delete the run (its owner or the one in charge)."""
    return may_change(_class.person(), owner_of_run(job_queue().jobs(), run_id))


def delete_run(run_id: str) -> None:
    """Delete one of your runs (shipped ones are read-only); NotYours for someone else's."""
    check_change(_class.person(), owner_of_run(job_queue().jobs(), run_id))
    runs.delete_run(run_id, root=runs_dir())


def cancel_job(job_id: str) -> None:
    """Ask a job of this person's (or any, for the one in charge) to stop."""
    queue = job_queue()
    try:
        check_change(_class.person(), queue.get(job_id))
    except NotYours as error:
        st.error(str(error))
        return
    queue.cancel(job_id)
    st.toast("Asked the run to stop; it stops after the current step.")


# ImageNet weights (torchvision) for the -imagenet presets --------------------------------
@st.cache_resource(max_entries=2, show_spinner="Loading the ImageNet weights ...")
def _imagenet_state(preset: str, source: str, stamp: float) -> dict:
    model = pretrained_model(preset, source)  # never downloads
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def weights_stamp(preset: str, source: str) -> float:
    """The modification time of a weights source (0 if absent): a new file, a new cache entry."""
    path = torchvision_cache_path(torchvision_arch(preset)) if source == IMAGENET else Path(source)
    return path.stat().st_mtime if path.is_file() else 0.0


def imagenet_state(preset: str, source: str) -> dict:
    """ImageNet weights of an -imagenet preset from a file or torchvision's cache ("imagenet"),
    never downloaded; raises WeightsError with one line."""
    return _imagenet_state(preset, source, weights_stamp(preset, source))


def weights_origin(source: str) -> str:
    """Where the pretrained net's weights came from, for a caption."""
    if source == IMAGENET:
        return "Pretrained: torchvision's ImageNet weights, from its cache."
    return f"Pretrained: the weights in {Path(source).name}."


def download_size(preset: str) -> str:
    """What the download button fetches, for its help text."""
    arch = torchvision_arch(preset)
    size = torchvision_download_mb(arch)
    file = f"{size:.0f} MB" if size else "the file"
    return f"Fetches {file} once into torchvision's cache ({torchvision_cache_path(arch).parent})"


def fetch_imagenet_weights(preset: str) -> None:
    """Download torchvision's ImageNet weights of `preset` into its cache (on a click only)."""
    arch = torchvision_arch(preset)
    with st.spinner(f"Downloading torchvision's {arch} ImageNet weights ..."):
        torchvision_weights(arch, download=True)


# Images ----------------------------------------------------------------------------------
def show_image(png: bytes, name: str, data: pd.DataFrame | None = None) -> None:
    """Render a PNG (an image grid) with a PNG download, and a CSV one when `data` is given."""
    st.image(png, width="content")
    row = st.container(horizontal=True, gap="small")
    row.download_button(
        "PNG",
        png,
        f"{name}.png",
        "image/png",
        key=f"dl_image_{name}",
        on_click="ignore",
        icon=":material/download:",
    )
    if data is not None:
        row.download_button(
            "CSV",
            lambda: charts.to_csv(data),
            f"{name}.csv",
            "text/csv",
            key=f"dl_image_csv_{name}",
            on_click="ignore",
            icon=":material/download:",
        )


def show_metric_charts(
    frames: LockstepFrames,
    metrics: tuple[str, ...],
    residual: dict[str, bool],
    key: str,
    why_empty: Callable[[str], str],
    marks: dict[str, list[tuple[int, str]]] | None = None,
) -> None:
    """Two columns of multi-net charts, one per metric (names in METRIC_CHARTS); a metric
    with nothing logged yet gets a caption saying why (`why_empty(value)`) instead. `marks`:
    labelled vertical lines per metric (lockstep_chart's)."""
    columns = st.columns(2)
    for index, name in enumerate(metrics):
        metric = METRIC_CHARTS[name]
        frame = getattr(frames, metric.table)
        with columns[index % 2]:
            if frame[metric.value].notna().any():
                chart = lockstep_chart(
                    frame,
                    metric.x,
                    metric.value,
                    metric.title,
                    metric.axis,
                    residual,
                    log=metric.log,
                    marks=(marks or {}).get(name, ()),
                )
                show_chart(chart, f"{key}-{metric.value}", frame)
            else:
                st.caption(f"{metric.title}: {why_empty(metric.value)}")


def show_grad_heatmap(events_by_net: dict, name: str, frames: LockstepFrames | None = None) -> None:
    """The layer x step heat map of gradient norms of runs that logged them (nothing if none);
    with the nets' `frames` (several nets), also a warning about any that barely trained."""
    frame = layer_grad_frame(events_by_net)
    if frame.empty:
        return
    show_chart(layer_grad_heatmap(frame), name, frame)
    steps = frame.groupby("net")["step"].nunique()
    st.caption(
        "Each column is a step at which gradient norms were logged ("
        + ", ".join(f"{count} for {net}" for net, count in steps.items())
        + "); each row a conv or linear layer, input end at the top. One colour scale for all."
    )
    warning = barely_trained_sentence(frames) if frames is not None else ""
    if warning:
        st.warning(warning, icon=":material/warning:")


def _default_trained_run(runs: dict[str, str]) -> str:
    """Your newest run with weights, else the shipped ResNet-20, else anything with weights."""
    weighted = [path for path in runs if (Path(path) / "best.pt").is_file()]
    yours = [path for path in weighted if Path(path).is_relative_to(runs_dir())]
    shipped = [path for path in weighted if Path(path).name == "resnet20"]
    return (yours or shipped or weighted or list(runs))[0]


def pick_trained_run(key: str, verb: str) -> str | None:
    """A run picker over your runs and the shipped ones, runs without weights marked; None
    (with a note) when there are no runs. `verb` says what needs the weights ("tested")."""
    runs = all_runs()
    if not runs:
        st.info("No runs yet: train one on the Train page.")
        return None
    if st.session_state.get(key) not in runs:
        st.session_state[key] = _default_trained_run(runs)
    return st.selectbox(
        "Run",
        list(runs),
        key=key,
        format_func=lambda path: (
            runs.get(path, path) + ("" if (Path(path) / "best.pt").is_file() else " (no weights)")
        ),
        help=f"Your runs and the shipped ones; only runs that saved weights (best.pt) can be {verb}",
    )
