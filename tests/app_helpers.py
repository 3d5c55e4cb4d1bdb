"""Helpers shared by the app's tests (AppTest and browser)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGES = [
    "pages/build.py",
    "pages/shapes.py",
    "pages/gradients.py",
    "pages/train.py",
    "pages/runs.py",
]

# A training config that finishes in a second or two on a CPU (synthetic data, fp32).
QUICK_CPU_RUN = {
    "model": "resnet20",
    "dataset": "synthetic",
    "subset": 100,
    "epochs": 1,
    "batch_size": 50,
    "precision": "fp32",
    "channels_last": False,
    "device": "cpu",
    "eval_batch_size": 500,
}


def app_test(timeout: float = 120) -> AppTest:
    """An AppTest of the whole app (router + sidebar), not yet run.

    Cached resources (the job queue, which reads $RESNET_EXPLORER_CHECKPOINTS once) live for
    the whole process, so each test starts from a clean cache.
    """
    import streamlit as st

    st.cache_resource.clear()
    return AppTest.from_file(str(APP), default_timeout=timeout)


def no_exceptions(at: AppTest) -> list[str]:
    """The messages of every exception element the last run showed."""
    return [e.value for e in at.exception]


def tiny_run(checkpoints: Path, model: str = "resnet20") -> Path:
    """Train a few steps on the synthetic set into checkpoints/runs/<id>; returns the run dir."""
    from resnet_core.training.fitting import fit
    from resnet_core.training.runs import new_run_dir

    run_dir = new_run_dir(model, root=Path(checkpoints) / "runs")
    fit({**QUICK_CPU_RUN, "model": model, "subset": 200}, run_dir=run_dir)
    return run_dir
