"""ResNet Explorer: see why residual networks work.

Run with `streamlit run app.py`. This file is only the router and the sidebar; each page
lives in pages/ and does its work through resnet_core.
"""

from __future__ import annotations

import os

import streamlit as st

from pages import _class, _ui
from resnet_core.training.data import DatasetNotFound, cifar10_layout, load_cifar10

st.set_page_config(page_title="ResNet Explorer", page_icon=":material/hub:", layout="wide")

# To add a page, add one st.Page here (the order is the order in the sidebar, under its
# section's heading) and call _ui.require_router() at the top of the page file.
PAGES = {
    "Look at a net": [
        st.Page("pages/build.py", title="Build", icon=":material/construction:", default=True),
        st.Page("pages/shapes.py", title="Shapes", icon=":material/straighten:", url_path="shapes"),
        st.Page(
            "pages/gradients.py",
            title="Gradient flow",
            icon=":material/trending_down:",
            url_path="gradients",
        ),
    ],
    "Why residual nets work": [
        st.Page(
            "pages/lesion.py", title="Lesions", icon=":material/content_cut:", url_path="lesion"
        ),
        st.Page(
            "pages/landscape.py",
            title="Loss landscape",
            icon=":material/landscape:",
            url_path="landscape",
        ),
        st.Page(
            "pages/mechanisms.py",
            title="Mechanisms",
            icon=":material/account_tree:",
            url_path="mechanisms",
        ),
    ],
    "Train and inspect": [
        st.Page(
            "pages/train.py", title="Train", icon=":material/model_training:", url_path="train"
        ),
        st.Page("pages/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
        st.Page("pages/inspect.py", title="Inspect", icon=":material/biotech:", url_path="inspect"),
    ],
    "Teach": [
        st.Page(
            "pages/lecture.py", title="Lecture", icon=":material/co_present:", url_path="lecture"
        ),
        st.Page(
            "pages/exercises.py",
            title="Exercises",
            icon=":material/edit_note:",
            url_path="exercises",
        ),
    ],
}


def sidebar() -> None:
    """Device, data status and display options, shown on every page."""
    with st.sidebar:
        _class.badge()
        st.caption(f"**Device:** {_ui.device_name()}")
        st.caption(f"**Current net:** `{_ui.current_label()}`")
        st.session_state.setdefault("data_dir", os.environ.get(_ui.DATA_ENV) or "data")
        data_status()
        st.toggle(
            "Large fonts (projector)",
            key="large_fonts",
            help="Bigger text and chart labels for the back of a lecture room",
        )
    if st.session_state.get("large_fonts"):
        st.html(
            "<style>[data-testid=stMain] p, [data-testid=stMain] li, [data-testid=stMain] label "
            "{font-size: 1.3rem !important;}</style>"
        )


def data_status() -> None:
    """Where CIFAR-10 is, and a field to name another folder (for the one in charge only:
    a student on a class server sees no server paths)."""
    root = _ui.data_dir()
    found = cifar10_layout(root)
    if not _class.person().in_charge:
        st.caption(f"**CIFAR-10:** {'on this server' if found else 'not on this server'}")
        return
    if found:
        st.caption(f"**CIFAR-10:** found in {_ui.shown(root.resolve())} ({found})")
    else:
        st.caption(
            f"**CIFAR-10:** not found in {_ui.shown(root)}. Architecture, shapes and gradients "
            "need no data; training uses a labelled synthetic set until you name a "
            "folder below or download it."
        )
    with st.expander("Data folder", expanded=not found):
        st.text_input(
            "CIFAR-10 folder",
            key="data_dir",
            help="A folder with cifar-10-batches-py/ or train/<class>/*.jpg + test/. "
            f"Default: ${_ui.DATA_ENV} or ./data",
        )
        if not found and st.button("Download CIFAR-10 (170 MB)", key="download_cifar"):
            download(root)


def download(root) -> None:
    with st.spinner(f"Downloading CIFAR-10 into {_ui.shown(root)} ..."):
        try:
            load_cifar10(root, download=True)
        except DatasetNotFound as error:
            st.error(_ui.shown(error))
            return
    st.rerun()


# Hidden: the sidebar draws the links itself (see _ui.navigation), so a freshly started
# server shows the app's navigation from its first request on.
page = st.navigation(PAGES, position="hidden")
if _class.class_server():  # no tracebacks (and the server paths in them) for a class
    st.set_option("client.showErrorDetails", "none")
_class.gate()
_class.set_cookie()
_ui.sync_net_with_url()
_ui.navigation(PAGES)
sidebar()
with _ui.routed():
    page.run()
