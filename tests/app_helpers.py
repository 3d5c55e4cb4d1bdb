"""Helpers shared by the app's tests (AppTest and browser)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGES = ["pages/build.py", "pages/shapes.py", "pages/gradients.py", "pages/train.py", "pages/runs.py"]


def app_test(timeout: float = 120) -> AppTest:
    """An AppTest of the whole app (router + sidebar), not yet run."""
    return AppTest.from_file(str(APP), default_timeout=timeout)


def no_exceptions(at: AppTest) -> list[str]:
    """The messages of every exception element the last run showed."""
    return [e.value for e in at.exception]
