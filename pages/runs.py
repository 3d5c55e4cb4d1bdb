"""Runs: every training run on disk; compare curves, open one in Gradient flow, delete."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import _ui
from resnet_core.charts import epoch_chart, metrics_frames, runs_compare_chart, step_chart
from resnet_core.explain import fmt_seconds

_ui.require_router()


def _table(infos: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": info["run_id"],
                "model": info["model"],
                "data": "synthetic" if info["dataset"] == "synthetic" else info["dataset"],
                "status": info["state"],
                "best test acc (%)": None if info["best_test_acc"] is None else round(info["best_test_acc"], 2),
                "epochs": info["epochs"],
                "time": fmt_seconds(info["seconds"]) if info["seconds"] else "",
                "device": info["device"],
            }
            for info in infos
        ]
    )


def _compare(infos: dict[str, dict], chosen: list[str]) -> None:
    epochs, losses = [], []
    for run_id in chosen:
        steps, long = metrics_frames(infos[run_id]["events"])
        name = f"{infos[run_id]['model']} ({run_id[-6:]})"
        test = long[long["split"] == "test"].rename(columns={"accuracy": "test_acc"})
        if len(test):
            epochs.append(test.assign(run=name)[["run", "epoch", "test_acc"]])
        if len(steps) and "loss" in steps:
            losses.append(steps[["step", "loss"]].assign(run=name))
    if not epochs and not losses:
        st.info("The chosen runs have no curves yet.")
        return
    left, right = st.columns(2)
    if epochs:
        frame = pd.concat(epochs, ignore_index=True)
        with left:
            _ui.show_chart(runs_compare_chart(frame), "runs-test-accuracy", frame)
    if losses:
        frame = pd.concat(losses, ignore_index=True)
        with right:
            _ui.show_chart(step_chart(frame, "loss", "Training loss per step", "loss"), "runs-loss", frame)


def _open_in_gradients(run_id: str) -> None:
    st.session_state["grad_mode"] = "A trained run"
    st.session_state["grad_run"] = run_id
    st.switch_page("pages/gradients.py")


def _delete(run_id: str) -> None:
    with st.popover("Delete this run", icon=":material/delete:"):
        st.write(f"Delete **{run_id}** and its checkpoints? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key="runs_delete_confirm"):
            try:
                _ui.delete_run(run_id)
            except (OSError, ValueError) as error:
                _ui.error_box(error)
                return
            st.toast(f"Deleted {run_id}.")
            st.rerun()


st.title("Runs")
ids = _ui.run_ids()
if not ids:
    st.info("No runs yet. Start one on the Train page; it appears here while it runs.")
    st.stop()
infos = {run_id: info for run_id in ids if (info := _ui.run_info(run_id)) is not None}
_ui.show_table(_table(list(infos.values())), "runs")

st.subheader("Compare")
chosen = st.multiselect("Runs to compare", list(infos), default=list(infos)[:2], key="runs_compare",
                        format_func=lambda i: f"{infos[i]['model']}: {i}")
if chosen:
    _compare(infos, chosen)

st.subheader("One run")
run_id = st.selectbox("Run", list(infos), key="runs_one", format_func=lambda i: f"{infos[i]['model']}: {i}")
info = infos[run_id]
columns = st.columns([2, 2, 6])
if columns[0].button("Open in Gradient flow", icon=":material/trending_down:", disabled=info["spec"] is None):
    _open_in_gradients(run_id)
with columns[1]:
    if info["state"] in ("running", "queued", "starting"):
        st.caption("Cancel it on the Train page before deleting.")
    else:
        _delete(run_id)
steps, epochs = metrics_frames(info["events"])
if len(epochs):
    _ui.show_chart(epoch_chart(epochs, title=f"{info['model']}: accuracy per epoch"), f"{run_id}-accuracy", epochs)
with st.expander("Settings of this run"):
    st.json(info["config"])
