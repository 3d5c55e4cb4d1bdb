"""Exercises: write the residual block; the checks say what is wrong, with numbers."""

from __future__ import annotations

import os

import streamlit as st

from pages import _ui
from resnet_core.exercises import EXERCISES
from resnet_core.exercises.sandbox import EXERCISES_ENV, Limits, judge_source, may_run

_ui.require_router()

st.title("Your turn: write the block")
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

allowed, why = may_run(st.get_option("server.address"), os.environ.get(EXERCISES_ENV))
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
verdict = st.session_state.get(f"ex_verdict_{exercise.id}")
if verdict is not None:
    if verdict.report is None:
        st.error(verdict.message, icon=":material/error:")
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
            st.markdown(f"{mark} **{finding['check']}**: {finding['message']}")
    if verdict.output.strip():
        with st.expander("What your code printed"):
            st.code(verdict.output)
