"""The Train page's model choice: the net from the Build page, and a net too big for this
machine refused before anything is queued; the speedrun ready choices, and what a machine
without their GPU says."""

from __future__ import annotations

import json

import pytest
from app_helpers import app_test, no_exceptions

from resnet_core.training.choices import CHOICE_NOTES, READY_CHOICES, missing_device
from resnet_core.training.events import Done, Note, Start
from resnet_core.training.jobs import JobQueue
from resnet_core.training.speedruns import SPEEDRUNS


@pytest.fixture()
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    return at


def _start(app) -> None:
    [b for b in app.button if b.label == "Start training"][0].click().run()


def _build_custom(app, depths: str, widths: str) -> None:
    app.segmented_control(key="build_mode").set_value("Custom").run()
    app.text_input(key="build_depths").set_value(depths)
    app.text_input(key="build_widths").set_value(widths)
    [b for b in app.button if b.label == "Build this net"][0].click().run()


def test_build_then_train_this_net_queues_the_custom_spec(app, tmp_path):
    _build_custom(app, "2, 2", "8, 16")
    captions = " ".join(c.value for c in app.caption)
    assert "a training step on 128 images of 32x32 needs about" in captions
    [b for b in app.button if b.label == "Train this net"][0].click().run()
    assert no_exceptions(app) == []
    model = app.selectbox(key="train_f_own_model")
    assert model.value == "current net: custom basic [2, 2] residual"
    _start(app)
    assert no_exceptions(app) == [] and [e.value for e in app.error] == []
    [job] = JobQueue(tmp_path / "checkpoints").jobs()
    assert job.config["model"]["depths"] == [2, 2] and job.config["model"]["widths"] == [8, 16]
    assert job.run_id.split("-")[2] == "custom"
    JobQueue(tmp_path / "checkpoints").cancel(job.job_id)


def test_a_preset_from_build_is_chosen_by_name(app):
    app.selectbox(key="build_preset").set_value("resnet56").run()
    [b for b in app.button if b.label == "Train this net"][0].click().run()
    assert app.selectbox(key="train_f_own_model").value == "resnet56"


def test_a_net_too_big_for_this_machine_is_refused_with_its_estimate(app, tmp_path):
    app.switch_page("pages/train.py").run()
    app.selectbox(key="train_f_own_model").set_value("resnet152-imagenet")
    app.number_input(key="train_f_own_batch_size").set_value(60_000)
    _start(app)
    assert no_exceptions(app) == []
    errors = " ".join(e.value for e in app.error)
    assert "needs about" in errors and "parameters" in errors and "Nothing was started" in errors
    assert JobQueue(tmp_path / "checkpoints").jobs() == []


def test_build_page_offers_the_diagram_source(app):
    _build_custom(app, "2, 2", "8, 16")
    buttons = [b for b in app.get("download_button") if "Graphviz" in b.proto.label]
    assert len(buttons) == 1


def test_gpus_for_this_run_appears_only_with_more_than_one_gpu(app, tmp_path, monkeypatch):
    app.switch_page("pages/train.py").run()
    assert [s for s in app.selectbox if s.label == "GPUs for this run"] == []
    monkeypatch.setattr("resnet_core.training.jobs.cuda_devices", lambda: ["cuda:0", "cuda:1"])
    app.run()
    [choice] = [s for s in app.selectbox if s.label == "GPUs for this run"]
    assert choice.options == ["1", "2"]
    choice.set_value(2)
    app.selectbox(key="train_f_own_device").set_value("cpu")
    _start(app)  # the choice reaches the queue, which refuses data-parallel on the CPU
    assert no_exceptions(app) == []
    assert "gpus: 2 needs device cuda or auto" in " ".join(e.value for e in app.error)
    assert JobQueue(tmp_path / "checkpoints").jobs() == []


@pytest.mark.parametrize("name", sorted(SPEEDRUNS))
def test_each_speedrun_is_a_ready_choice_named_by_its_label(name):
    speedrun = SPEEDRUNS[name]
    assert READY_CHOICES[speedrun.label()] == [speedrun.fields()]
    note = CHOICE_NOTES[speedrun.label()]
    assert "made for a CUDA GPU" in note.replace("Made", "made")
    for ingredient in speedrun.ingredients:
        assert ingredient.name in note and ingredient.why in note
    assert not [label for label in READY_CHOICES if "aiming at" in label]


def test_a_missing_gpu_is_named_before_anything_is_queued(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    speedrun = READY_CHOICES[SPEEDRUNS["resnet20"].label()]
    assert "CUDA GPU" in missing_device(speedrun)
    assert missing_device([{**speedrun[0], "device": "cpu"}]) is None


def test_a_speedrun_on_a_machine_without_cuda_warns_and_queues_nothing(app, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    app.switch_page("pages/train.py").run()
    label = SPEEDRUNS["resnet18"].label()
    app.button_group(key="train_recipe").set_value(label).run()
    assert no_exceptions(app) == []
    assert "which this machine does not have" in " ".join(w.value for w in app.warning)
    prefix = str(list(READY_CHOICES).index(label))
    assert app.selectbox(key=f"train_f_{prefix}_device").value == "cuda"
    assert app.selectbox(key=f"train_f_{prefix}_tta").value == "flip"
    assert app.number_input(key=f"train_f_{prefix}_ema").value == pytest.approx(0.999)
    _start(app)
    assert no_exceptions(app) == []
    errors = " ".join(e.value for e in app.error)
    assert "device: 'cuda' is not available" in errors and "Nothing was started" in errors
    assert JobQueue(tmp_path / "checkpoints").jobs() == []


def test_a_runs_notes_are_shown_beside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    queue = JobQueue(tmp_path / "checkpoints")
    job = queue.submit({"model": "resnet20", "dataset": "synthetic", "device": "cpu"})
    job = queue.update(job.job_id, state="done")
    note = Note(step=0, epoch=0, message="torch.compile is off for this run: no C compiler")
    records = [Start(model="resnet20").to_dict(), note.to_dict(), Done().to_dict()]
    run_dir = queue.run_dir(job)
    run_dir.mkdir(parents=True)
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (run_dir / "metrics.jsonl").write_text(lines, encoding="utf-8")
    app = app_test()
    app.run()
    app.switch_page("pages/train.py").run()
    assert no_exceptions(app) == []
    assert note.message in [info.value for info in app.info]
