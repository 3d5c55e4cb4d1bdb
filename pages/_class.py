"""Who uses this browser, for the pages: a laptop's owner, or on a class server the teacher
(from the link with the token) or a student (a name typed once, kept by a signed cookie).

The rules themselves live in resnet_core (`common.classroom`, `training.class_rules`); this
module only finds the person of a session, asks a new student's name, keeps the cookie and
draws the teacher's class settings.
"""

from __future__ import annotations

import os
import re

import streamlit as st

from resnet_core.common.classroom import (
    CLASS_ENV,
    COOKIE,
    OWNER,
    TEACHER_COOKIE,
    TOKEN_ENV,
    Person,
    is_class_server,
    new_token,
    read_student,
    student_cookie,
    teacher_cookie,
    token_matches,
)
from resnet_core.common.env import checkpoints_root
from resnet_core.common.text import escape_markdown
from resnet_core.training.class_rules import ClassLimits, read_limits, write_limits

LAPTOP = Person("owner", "", OWNER)
TEACHER = Person("teacher", "Teacher", OWNER)
_COOKIE_DAYS = 120


def class_server() -> bool:
    return is_class_server(st.get_option("server.address"), os.environ.get(CLASS_ENV))


@st.cache_resource
def _token() -> str:
    """The teacher token; without one a random key, so that cookies still hold but nobody
    is the teacher."""
    return os.environ.get(TOKEN_ENV) or "no teacher " + new_token()


def limits() -> ClassLimits:
    return read_limits(checkpoints_root())


def person() -> Person:
    """This session's person (after `gate` has run on the page)."""
    return st.session_state.get("_person") or (LAPTOP if not class_server() else _anonymous())


def _anonymous() -> Person:
    return Person("student", "", "")  # owns nothing, is in charge of nothing


def gate() -> None:
    """On a class server, find who this is; a new student types a name (nothing else shows
    until then). The teacher's link is used once: the token leaves the address bar."""
    if not class_server() or st.session_state.get("_person") is not None:
        return
    given = st.query_params.get("teacher")
    if given is not None:
        del st.query_params["teacher"]  # not kept in the address bar, history or share links
    token, cookies = os.environ.get(TOKEN_ENV) or "", st.context.cookies
    if token_matches(given, token) or token_matches(
        cookies.get(TEACHER_COOKIE), teacher_cookie(token)
    ):
        _keep(TEACHER, TEACHER_COOKIE, teacher_cookie(token))
        return
    student = read_student(cookies.get(COOKIE), _token())
    if student is not None:
        st.session_state["_person"] = student
        return
    _ask_name()


def _ask_name() -> None:
    st.title("ResNet Explorer")
    st.write("This app is shared by a class. Type your name, so that your runs are yours.")
    with st.form("class_name"):
        typed = st.text_input("Your name", max_chars=40)
        go = st.form_submit_button("Start", type="primary")
    if go:
        try:
            student, value = student_cookie(typed, _token())
        except ValueError as error:
            st.error(str(error))
        else:
            _keep(student, COOKIE, value)
            st.rerun()
    st.stop()


def _keep(who: Person, name: str, value: str) -> None:
    """Remember `who` for this session, and for this browser with a cookie (set by script:
    the values are ours, base64 and hex only)."""
    st.session_state["_person"] = who
    st.session_state["_set_cookie"] = (name, value)


def set_cookie() -> None:
    """Write a cookie `_keep` asked for (on the run after, so that a rerun cannot drop it)."""
    pending = st.session_state.pop("_set_cookie", None)
    if pending is None:
        return
    name, value = pending
    if not re.fullmatch(r"[A-Za-z0-9_.=-]+", name + value):  # only our base64 and hex
        return
    st.html(
        f"<script>document.cookie = '{name}={value}; path=/; "
        f"max-age={_COOKIE_DAYS * 86400}; samesite=strict';</script>",
        unsafe_allow_javascript=True,
    )


def badge() -> None:
    """Who this is, in the sidebar (class servers only); the teacher's class settings."""
    if not class_server():
        return
    who = person()
    if who.role == "teacher":
        st.caption("**You:** the teacher")
        settings_form()
    else:
        st.caption(f"**You:** {escape_markdown(who.name, one_line=True)} (student)")


def settings_form() -> None:
    now = limits()
    with st.expander("Class settings"), st.form("class_settings"):
        jobs = st.number_input("Jobs at once per student", 1, 20, now.jobs_each)
        epochs = st.number_input("Most epochs per run", 1, 500, now.max_epochs)
        subset = st.number_input("Most training images", 10, 50_000, now.max_subset, 1000)
        params = st.number_input("Most parameters", 1000, 100_000_000, now.max_params, 100_000)
        data = st.text_input("Students' CIFAR-10 folder", now.data_dir,
                             help="Empty: the server's default")  # fmt: skip
        code = st.toggle("Run students' exercise files here", now.exercises)
        if st.form_submit_button("Save"):
            chosen = ClassLimits(int(jobs), int(epochs), int(subset), int(params), code, data)
            write_limits(checkpoints_root(), chosen)
            st.toast("Saved: every student's next request follows these limits.")
