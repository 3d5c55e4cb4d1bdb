"""runs page (being built)."""

import streamlit as st

from pages import _ui

_ui.require_router()

st.title("runs")
