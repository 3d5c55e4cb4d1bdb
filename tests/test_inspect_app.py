"""AppTest checks of the Inspect page: a shipped run on CIFAR-10, a run without weights,
a synthetic run, and a CIFAR-10 run where the data is missing."""

from __future__ import annotations

import pytest
from app_helpers import app_test, no_exceptions, tiny_run

from resnet_core.training.experiments import shipped_root

PAGE = "pages/inspect.py"


def _texts(at) -> str:
    return " ".join(e.value for kind in (at.markdown, at.caption, at.info) for e in kind)


@pytest.fixture()
def inspect(cifar_root, tmp_path, monkeypatch):  # cifar_root first: it may read the env
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(cifar_root))
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert no_exceptions(at) == []
    return at


def test_shipped_run_shows_accuracy_confusion_and_gallery(inspect):
    at = inspect
    assert at.selectbox(key="inspect_run").value.endswith("degradation/resnet20")
    text = _texts(at)
    assert "is the hardest class" in text and "of the 10,000 test images are right" in text
    assert "Rows: the true class" in text  # the confusion matrix
    assert "mistakes it was surest of" in text  # the gallery
    assert len(at.get("vega_lite_chart")) == 2  # per class, confusion matrix
    assert len(at.get("image")) == 2  # the gallery, training images stored and augmented

    at.segmented_control(key="inspect_cells").set_value("count").run()
    at.segmented_control(key="inspect_kind").set_value("unsure_hits").run()
    at.selectbox(key="inspect_class").set_value(3).run()
    assert no_exceptions(at) == []
    assert "of the 1,000 cat test images right" in _texts(at)
    next(b for b in at.button if b.label == "New draw").click().run()
    assert no_exceptions(at) == [] and "(draw 1)" in _texts(at)


def test_run_without_weights_says_so(inspect):
    at = inspect
    runs = at.selectbox(key="inspect_run")
    assert any(label.endswith("(no weights)") for label in runs.options)
    no_weights = str(shipped_root() / "cnn_vs_resnet" / "resnet18")
    runs.set_value(no_weights).run()
    assert no_exceptions(at) == []
    assert "saved no weights" in _texts(at)
    assert not at.get("vega_lite_chart")  # no charts without weights ...
    assert len(at.get("image")) == 1  # ... but the data is still shown


def test_synthetic_run_and_missing_cifar10(tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    run = tiny_run(checkpoints)
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert no_exceptions(at) == []
    assert at.selectbox(key="inspect_run").value == str(run)  # your newest run comes first
    text = _texts(at)
    assert "trained on the **synthetic** stand-in set" in text
    assert "of the 1,000 test images are right" in text
    shipped = str(shipped_root() / "degradation" / "resnet20")
    at.selectbox(key="inspect_run").set_value(shipped).run()
    assert no_exceptions(at) == []
    assert "CIFAR-10, which is not available here" in _texts(at)
