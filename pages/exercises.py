"""Exercises: write the residual block; the checks say what is wrong, with numbers."""

from __future__ import annotations

import dataclasses
import os

import streamlit as st

from pages import _class, _ui
from resnet_core.exercises import EXERCISES
from resnet_core.exercises.sandbox import (
    EXERCISES_ENV,
    Limits,
    judge_source,
    may_run,
    save_for_training,
)
from resnet_core.exercises.student_nets import student_files, student_group
from resnet_core.training.class_rules import check_request
from resnet_core.training.data import cifar10_layout

_ui.require_router()

st.title("Your turn: write it yourself")
exercise = EXERCISES[
    st.selectbox(
        "Exercise", list(EXERCISES), format_func=lambda key: EXERCISES[key].title, key="ex_id"
    )
]
st.caption(
    f"Write `class {exercise.class_name}` below (the TODOs say what goes where), then Check: "
    "your code runs in a process of its own, with time and memory limits, and each check "
    "says what your block computes that it should not."
)
code_key, hints_key = f"ex_code_{exercise.id}", f"ex_hints_{exercise.id}"
st.session_state.setdefault(code_key, exercise.starter)
st.session_state.setdefault(hints_key, 0)
st.html(  # code reads as code: a fixed-width font in the editor
    "<style>[data-testid=stTextArea] textarea {font-family: 'Source Code Pro', monospace;}</style>"
)
code = st.text_area("Your code", key=code_key, height=560)

# A class server runs students' code only when the teacher says so: started with
# RESNET_EXPLORER_EXERCISES=on, or turned on in the class settings (unless started with =off).
_setting = os.environ.get(EXERCISES_ENV)
allowed, why = may_run(None if _class.class_server() else st.get_option("server.address"), _setting)
if not allowed and _class.class_server() and (_setting or "").strip().lower() != "off":
    allowed, why = (True, "") if _class.limits().exercises else (False, why)
row = st.container(horizontal=True, gap="small")
checked = row.button(
    "Check", type="primary", disabled=not allowed, key="ex_check", help=why or None
)
if row.button(
    "Show a hint", key="ex_hint", disabled=st.session_state[hints_key] >= len(exercise.hints)
):
    st.session_state[hints_key] += 1
row.download_button(
    "Download your file", code, f"{exercise.id}.py", "text/x-python", on_click="ignore",
    icon=":material/download:", key="ex_download",
)  # fmt: skip
if row.button("Start over", key="ex_reset", help="Put the starter back (your code is lost)"):
    st.session_state[code_key] = exercise.starter
    st.rerun()
if why:
    st.info(why, icon=":material/lock:")
for number, hint in enumerate(exercise.hints[: st.session_state[hints_key]], 1):
    st.markdown(f"**Hint {number}.** {hint}")

if checked:
    with st.spinner("Running your code in a process of its own (at most a minute) ..."):
        st.session_state[f"ex_verdict_{exercise.id}"] = judge_source(
            exercise.id, code, f"{exercise.id}.py", Limits()
        )
    st.session_state[f"ex_checked_{exercise.id}"] = code
verdict = st.session_state.get(f"ex_verdict_{exercise.id}")
if verdict is not None:
    if verdict.report is None:
        st.error(_ui.shown(verdict.message), icon=":material/error:")
    else:
        findings = verdict.report["findings"]
        failed = [f for f in findings if not f["passed"]]
        if failed:
            st.error(
                f"Not yet: {len(failed)} of {len(findings)} checks fail.", icon=":material/close:"
            )
        else:
            st.success(
                f"Every check passes ({len(findings)} of {len(findings)}).", icon=":material/check:"
            )
        for finding in findings:
            mark = ":green[**ok**]" if finding["passed"] else ":red[**wrong**]"
            st.markdown(f"{mark} **{finding['check']}**: {_ui.shown(finding['message'])}")
    if verdict.output.strip():
        with st.expander("What your code printed"):
            st.code(verdict.output)


def _train_form(source: str) -> None:
    """Train the student's passing net beside the plain net and the reference, as a job."""
    st.subheader("Train it beside the plain net and the reference ResNet")
    st.caption(
        "Three nets train in lockstep on the same batches: yours, the reference ResNet it "
        "matched (yours starts from its weights) and the plain net of the same depth. Your "
        "code runs in the training job's own process, under a memory limit on the CPU."
    )
    with st.form("ex_train"):
        left, middle, right = st.columns(3)
        n_blocks = left.selectbox("Depth", [1, 2, 3, 5, 9], index=2,
                                  format_func=lambda n: f"{6 * n + 2} layers (n_blocks={n})")  # fmt: skip
        epochs = middle.number_input("Epochs", 1, 30, 1)
        subset = right.number_input("Training images", 500, 50_000, 5000, step=500)
        go = st.form_submit_button(
            "Train in lockstep", type="primary", icon=":material/play_arrow:"
        )
    if not go:
        return
    queue = _ui.job_queue()
    found = cifar10_layout(_ui.data_dir()) is not None
    settings = {"epochs": int(epochs), "subset": int(subset), "data_dir": str(_ui.data_dir()),
                "dataset": "cifar10" if found else "synthetic"}  # fmt: skip
    who, limits = _class.person(), dataclasses.replace(_class.limits(), exercises=allowed)
    try:
        path = save_for_training(source, student_files(queue.runs_dir))
        configs = student_group(path, n_blocks, settings)
        check_request(who, configs, queue.active(), limits)
        job = queue.submit_group(configs, owner=who)
    except (ValueError, OSError) as error:
        _ui.error_box(error, "Nothing was started.")
        return
    st.session_state["train_watch"] = job.job_id
    st.success(f"Queued {job.label}" + ("" if found else " on the synthetic stand-in set "
               "(CIFAR-10 was not found)") + ".", icon=":material/schedule:")  # fmt: skip
    st.page_link("pages/train.py", label="Watch the three curves on the Train page", icon=":material/monitoring:")  # fmt: skip


if exercise.trains and allowed and verdict is not None and verdict.code == 0:
    if st.session_state.get(f"ex_checked_{exercise.id}") == code:
        _train_form(code)
    else:
        st.info(
            "Your code changed since it passed: Check it again to train it.", icon=":material/edit:"
        )
