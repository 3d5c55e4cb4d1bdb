"""Runs: every training run on disk; compare curves, open one in Gradient flow, delete."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages import _class, _ui
from resnet_core.training.events import Start
from resnet_core.training.runs import RunError, RunInfo
from resnet_core.views.charts import epoch_chart, metrics_frames
from resnet_core.views.explain import fmt_seconds
from resnet_core.views.lockstep import COMPARE_METRICS, lockstep_frames

_ui.require_router()


def _data_label(info: RunInfo) -> str:
    """What the run trained on; nothing for a run whose status cannot be read."""
    if info.state == "unreadable":
        return ""
    return "synthetic" if info.synthetic else "CIFAR-10"


def _table(infos: list[RunInfo]) -> pd.DataFrame:
    table = pd.DataFrame(
        [
            {
                "run": info.id,
                "model": info.model,
                "data": _data_label(info),
                "status": info.state,
                "best test acc (%)": ""
                if info.best_test_acc is None
                else f"{100 * info.best_test_acc:.2f}",
                "epochs": f"{info.epoch} of {info.epochs}",
                "time": fmt_seconds(info.seconds) if info.seconds else "",
                "device": info.device,
                "started": info.started.replace("T", " ")[:19],
            }
            for info in infos
        ]
    )
    if _class.class_server():  # whose run it is: the name its student typed
        owners = {
            run_id: job.owner_name for job in _ui.job_queue().jobs() for run_id in job.run_ids
        }
        table.insert(1, "by", [owners.get(info.id) or "" for info in infos])
    return table


def _residual(events: list) -> bool:
    start = next((e for e in events if isinstance(e, Start)), None)
    return bool(start.spec.get("residual", True)) if start is not None else True


def _compare(infos: dict[str, RunInfo], chosen: list[str]) -> None:
    events, residual = {}, {}
    for run_id in chosen:
        info = infos[run_id]
        name = info.model if run_id == info.model else f"{info.model} ({run_id[:15]})"
        events[name] = _ui.run_events(info.path)
        residual[name] = _residual(events[name])
    frames = lockstep_frames(events)
    if frames.steps.empty and frames.epochs.empty:
        st.info("The chosen runs have no curves yet.")
        return
    _ui.show_metric_charts(
        frames,
        COMPARE_METRICS,
        residual,
        "runs",
        lambda _: "none logged yet (a run is evaluated after each epoch).",
    )
    st.caption("Plain nets in reds, residual nets in blues.")
    _ui.show_grad_heatmap(events, "runs-layer-gradients", frames)


def _open_in_gradients(run_path: str) -> None:
    st.session_state["grad_mode"] = "A trained run"
    st.session_state["grad_run"] = run_path
    st.switch_page("pages/gradients.py")


def _delete(run_id: str) -> None:
    with st.popover("Delete this run", icon=":material/delete:"):
        st.write(f"Delete **{_ui.shown(run_id)}** and its checkpoints? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key="runs_delete_confirm"):
            try:
                _ui.delete_run(run_id)
            except (OSError, RunError) as error:
                _ui.error_box(error)
                return
            st.toast(f"Deleted {_ui.shown(run_id)}.")
            st.rerun()


st.title("Runs")
collections = _ui.run_collections()
collection = st.selectbox(
    "Collection",
    list(collections),
    key="runs_collection",
    help="Your runs, or results that ship with the app (where and how each was trained: "
    "see each experiment's experiment.json)",
)
yours = collection == _ui.YOUR_RUNS
infos = {info.id: info for info in _ui.run_list(collections[collection])}
if not infos:
    st.info(
        "No runs yet. Start one on the Train page; it appears here while it runs. "
        "Meanwhile the shipped collections above hold finished runs to explore."
    )
    st.stop()
_ui.show_table(_table(list(infos.values())), "runs")

st.subheader("Compare")
chosen = st.multiselect(
    "Runs to compare",
    list(infos),
    default=list(infos)[:4],
    key=f"runs_compare_{collection}",
    format_func=lambda i: f"{infos[i].model}: {i}",
)
if chosen:
    _compare(infos, chosen)

st.subheader("One run")
run_id = st.selectbox(
    "Run", list(infos), key=f"runs_one_{collection}", format_func=lambda i: f"{infos[i].model}: {i}"
)
info = infos[run_id]
if info.message:
    st.caption(f"Last message: {_ui.shown(info.message)}")
row = st.container(horizontal=True)
has_weights = (Path(info.path) / "best.pt").exists()
if row.button(
    "Open in Gradient flow",
    icon=":material/trending_down:",
    disabled=not has_weights,
    help=None
    if has_weights
    else "No weights saved for this run (a run saves them after each epoch)",
):
    _open_in_gradients(info.path)
with row:
    if not yours:
        st.caption("Shipped runs are read-only.")
    elif info.state == "running":
        st.caption("Cancel it on the Train page before deleting.")
    elif not _ui.may_change_run(run_id):
        st.caption("Someone else's run: only they or the teacher can delete it.")
    else:
        _delete(run_id)
steps, epochs = metrics_frames(_ui.run_events(info.path))
if len(epochs):
    _ui.show_chart(
        epoch_chart(epochs, title=f"{info.model}: accuracy per epoch"), f"{run_id}-accuracy", epochs
    )
