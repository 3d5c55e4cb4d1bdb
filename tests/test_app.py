"""AppTest checks of every page: renders, key widgets, error paths, state in the URL."""

from __future__ import annotations

import os

import pytest
from app_helpers import PAGES, app_test, no_exceptions, tiny_run

from resnet_core.nets import onnx_export


def _param(at, name: str) -> str:
    value = at.query_params[name]
    return value[0] if isinstance(value, list) else value


@pytest.fixture()
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    assert no_exceptions(at) == []
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app, page):
    app.switch_page(page).run()
    assert no_exceptions(app) == []
    assert app.title, f"{page} shows no title"


def test_sidebar_shows_device_and_missing_data(app):
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert "Device:" in captions
    assert "CIFAR-10:** not found" in captions
    assert app.sidebar.text_input(key="data_dir").value.endswith("no-data")
    assert app.sidebar.toggle(key="large_fonts").value is False


def test_switching_presets_updates_parameter_count(app):
    params = lambda: next(m.value for m in app.metric if m.label == "Parameters")  # noqa: E731
    assert params() == "270 k"
    app.selectbox(key="build_preset").set_value("resnet56").run()
    assert params() == "853 k"
    assert _param(app, "net") == "resnet56"


def _build_custom(app, **fields: str) -> None:
    """Fill the Build page's custom form (depths=, widths=) and submit it."""
    app.segmented_control(key="build_mode").set_value("Custom").run()
    for name, value in fields.items():  # a form: values go in on submit
        app.text_input(key=f"build_{name}").set_value(value)
    [b for b in app.button if b.label == "Build this net"][0].click().run()


def _downloads(app) -> list[str]:
    return [element.proto.label for element in app.get("download_button")]


def test_build_page_offers_the_net_as_svg_and_onnx(app, monkeypatch):
    assert {"Diagram (Graphviz .dot)", "Diagram (SVG)", "ONNX model (open in Netron)"} <= set(
        _downloads(app)
    )
    monkeypatch.setattr(onnx_export, "MAX_ONNX_PARAMS", 100_000)  # resnet20 is now too big
    app.run()
    assert no_exceptions(app) == []
    assert "ONNX model (open in Netron)" not in _downloads(app)
    assert "Diagram (SVG)" in _downloads(app)
    assert any("No ONNX download" in caption.value for caption in app.caption)


def test_custom_spec_error_shows_message_and_keeps_net(app):
    _build_custom(app, widths="16, 32")
    assert no_exceptions(app) == []
    errors = " ".join(e.value for e in app.error)
    assert "depths and widths" in errors
    assert next(m.value for m in app.metric if m.label == "Parameters") == "270 k"  # nothing lost


def test_custom_spec_builds_and_lands_in_url(app):
    _build_custom(app, depths="2, 2", widths="8, 16")
    assert no_exceptions(app) == []
    assert '"depths":[2,2]' in _param(app, "net")
    app.switch_page("pages/shapes.py").run()
    assert no_exceptions(app) == []
    assert any("custom basic [2, 2]" in c.value for c in app.caption)


def test_custom_zero_init_builds_and_is_refused_where_no_branch_norm_ends(app):
    app.segmented_control(key="build_mode").set_value("Custom").run()
    [zero] = [t for t in app.toggle if t.label.startswith("Branches start at zero")]
    zero.set_value(True)
    [block] = [s for s in app.selectbox if s.label == "Block"]
    block.set_value("preact")
    [b for b in app.button if b.label == "Build this net"][0].click().run()
    assert no_exceptions(app) == []
    assert "ends with a conv, not a BatchNorm" in " ".join(e.value for e in app.error)
    [block] = [s for s in app.selectbox if s.label == "Block"]
    block.set_value("basic")
    [b for b in app.button if b.label == "Build this net"][0].click().run()
    assert _param(app, "net") == "resnet20-zeroinit"  # the form's ResNet-20, known by name


def test_link_reopens_the_net(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = app_test()
    at.query_params["net"] = "resnet32"
    at.run()
    assert no_exceptions(at) == []
    assert next(m.value for m in at.metric if m.label == "Weighted layers") == "32"


def test_bad_link_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = app_test()
    at.query_params["net"] = "resnet9000"
    at.run()
    assert no_exceptions(at) == []
    assert any("cannot be built" in w.value for w in at.warning)


def test_shapes_too_small_input_is_a_message(app):
    app.switch_page("pages/shapes.py").run()
    box = [n for n in app.number_input if n.label.startswith("Input height")][0]
    box.set_value(2).run()
    assert no_exceptions(app) == []
    assert any("too small" in e.value for e in app.error)


def test_gradient_page_says_what_it_measured(app):
    app.switch_page("pages/gradients.py").run()
    app.select_slider(key="grad_depth").set_value(20).run()
    assert no_exceptions(app) == []
    text = " ".join(m.value for m in app.markdown)
    assert "The first conv layer gets" in text and "plain20" in text and "resnet20" in text
    app.radio(key="grad_mode").set_value("Current net: skips off vs on").run()
    assert no_exceptions(app) == []
    assert "resnet20 without skips" in " ".join(m.value for m in app.markdown)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoints folder holding one finished (tiny, synthetic) run."""
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    return checkpoints, tiny_run(checkpoints)


def test_train_page_offers_ready_choices_and_synthetic_data(app):
    app.switch_page("pages/train.py").run()
    assert no_exceptions(app) == []
    assert "Quick CPU demo" in str(app.button_group[0].proto)  # the ready choices
    assert app.selectbox(key="train_f_own_dataset").options == ["synthetic"]  # no CIFAR-10 here
    assert [b.label for b in app.button if b.label == "Start training"]


def test_bad_training_setting_is_a_message_and_nothing_starts(app, tmp_path):
    app.switch_page("pages/train.py").run()
    app.number_input(key="train_f_own_epochs").set_value(0)
    [b for b in app.button if b.label == "Start training"][0].click().run()
    assert no_exceptions(app) == []
    assert any("epochs" in e.value for e in app.error)
    assert not (tmp_path / "checkpoints" / "queue").exists() or not list(
        (tmp_path / "checkpoints" / "queue").glob("*.json")
    )


def test_runs_page_lists_and_opens_a_run_in_gradient_flow(trained, monkeypatch, tmp_path):
    checkpoints, run_dir = trained
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page("pages/runs.py").run()
    assert no_exceptions(at) == []
    assert at.selectbox(key="runs_one_Your runs").value == run_dir.name
    [b for b in at.button if b.label == "Open in Gradient flow"][0].click().run()
    assert no_exceptions(at) == []
    assert at.radio(key="grad_mode").value == "A trained run"
    text = " ".join(m.value for m in at.markdown)
    assert "resnet20 at init" in text and "resnet20 trained" in text


def test_train_page_shows_queue_positions(tmp_path, monkeypatch):
    from resnet_core.training.jobs import JobQueue

    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    queue = JobQueue(checkpoints)
    config = {"model": "resnet20", "dataset": "synthetic", "device": "cpu"}
    running = queue.submit(config, label="first")
    queue.update(running.job_id, state="running", pid=os.getpid())  # "alive": keeps the cpu busy
    queue.submit(config, label="second")
    queue.submit(config, label="third")
    at = app_test()
    at.run()
    at.switch_page("pages/train.py").run()
    assert no_exceptions(at) == []
    statuses = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["status"], strict=True))
    assert statuses == {
        "first": "running on cpu",
        "second": "waiting: number 1 in line for cpu",
        "third": "waiting: number 2 in line for cpu",
    }
    assert [b.label for b in at.button if b.label == "Cancel this run"]
    for job in queue.jobs():  # the waiting ones first: no worker starts one after the test
        if job.job_id != running.job_id:
            queue.cancel(job.job_id)
    queue.update(running.job_id, state="cancelled")


def test_naming_the_data_folder_finds_cifar10(
    cifar_root, app
):  # cifar_root first: app changes the env
    app.sidebar.text_input(key="data_dir").set_value(str(cifar_root)).run()
    assert no_exceptions(app) == []
    assert any("CIFAR-10:** found" in c.value for c in app.sidebar.caption)
    app.switch_page("pages/train.py").run()
    assert "cifar10" in app.selectbox(key="train_f_own_dataset").options


def test_delete_a_run_after_confirming(tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    run_dir = tiny_run(checkpoints, "plain20")
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page("pages/runs.py").run()
    assert no_exceptions(at) == []
    assert run_dir.is_dir()  # nothing goes before the confirmation
    [b for b in at.button if b.label == "Yes, delete it"][0].click().run()
    assert no_exceptions(at) == []
    assert not run_dir.exists()
    assert any("No runs yet" in i.value for i in at.info)


def test_huge_custom_net_is_refused_with_a_message(app):
    _build_custom(app, depths="64, 64, 64, 64", widths="2048, 2048, 4096, 8192")
    assert no_exceptions(app) == []
    assert any("too big to build" in e.value for e in app.error)
    assert next(m.value for m in app.metric if m.label == "Parameters") == "270 k"


def test_shipped_demo_runs_open_in_gradient_flow(app):
    from resnet_core.training.experiments import shipped_root

    if not (shipped_root() / "degradation").is_dir():
        pytest.skip("no shipped demo runs in this checkout")
    app.switch_page("pages/runs.py").run()
    shipped = [
        c
        for c in app.selectbox(key="runs_collection").options
        if c.startswith("Shipped: Deeper plain")
    ]
    app.selectbox(key="runs_collection").set_value(shipped[0]).run()
    assert no_exceptions(app) == []
    key = f"runs_one_{shipped[0]}"
    assert {"plain56: plain56", "resnet56: resnet56"} <= set(app.selectbox(key=key).options)
    assert not [b for b in app.button if b.label == "Yes, delete it"]  # shipped runs are read-only
    app.selectbox(key=key).set_value("resnet56").run()
    [b for b in app.button if b.label == "Open in Gradient flow"][0].click().run()
    assert no_exceptions(app) == []
    text = " ".join(m.value for m in app.markdown)
    assert "resnet56 at init" in text and "resnet56 trained" in text
