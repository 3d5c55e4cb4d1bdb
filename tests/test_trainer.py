"""The Trainer's pieces driven on their own, its callbacks and cancel-as-exception, and the
typed events that run folders (old ones and the shipped results included) read back as."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from app_helpers import QUICK_CPU_RUN

from resnet_core.training.callbacks import Callback, CancelRun, EventLog
from resnet_core.training.events import (
    EVENT_TYPES,
    Cancelled,
    Done,
    EpochEnd,
    Failed,
    GradNorms,
    Start,
    Step,
    parse_event,
)
from resnet_core.training.experiments import shipped_root
from resnet_core.training.fitting import fit, iter_fit
from resnet_core.training.runs import read_events, read_metrics, read_status, run_info
from resnet_core.training.trainer import Trainer, TrainingFailed
from resnet_core.views.charts import metrics_frames

SHIPPED_RUNS = sorted(path.parent for path in shipped_root().glob("*/*/metrics.jsonl"))
# 2 epochs of 2 steps each, gradient norms every 3 steps
TWO_EPOCHS = {**QUICK_CPU_RUN, "epochs": 2, "grad_norm_every": 3}


def test_one_step_on_its_own_changes_the_weights():
    trainer = Trainer(QUICK_CPU_RUN).setup()
    before = [p.detach().clone() for p in trainer.state.model.parameters()]
    images, labels = next(iter(trainer.state.train_loader))
    loss, correct = trainer.train_step(images, labels)
    assert trainer.step == 1 and loss.ndim == 0 and torch.isfinite(loss)
    assert 0 <= int(correct) <= len(labels)
    changed = [
        not torch.equal(a, b.detach()) for a, b in zip(before, trainer.state.model.parameters())
    ]
    assert any(changed)


def test_one_epoch_on_its_own_and_its_evaluation():
    log = EventLog()
    trainer = Trainer(QUICK_CPU_RUN, [log]).setup()
    train_loss, train_acc, seconds = trainer.train_epoch(1)
    assert trainer.step == trainer.state.steps_per_epoch == 2
    assert train_loss > 0 and 0 <= train_acc <= 1 and seconds > 0
    assert [type(e) for e in log.events] == [Step, Step]  # log_every=1; no start: fit not called
    test_loss, test_acc = trainer.evaluate()
    assert test_loss > 0 and 0 <= test_acc <= 1
    assert trainer.state.model.training  # evaluation puts the mode back


class _Hooks(Callback):
    """Records which named hook saw which event type."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, type]] = []

    def on_start(self, trainer, event):
        self.calls.append(("start", type(event)))

    def on_step(self, trainer, event):
        self.calls.append(("step", type(event)))

    def on_grad_norms(self, trainer, event):
        self.calls.append(("grad_norms", type(event)))

    def on_epoch(self, trainer, event):
        self.calls.append(("epoch", type(event)))

    def on_checkpoint(self, trainer, state, improved):
        self.calls.append(("checkpoint", type(state)))

    def on_done(self, trainer, event):
        self.calls.append(("done", type(event)))

    def on_close(self, trainer):
        self.calls.append(("close", type(None)))


def test_named_hooks_get_typed_events_in_order():
    hooks = _Hooks()
    result = Trainer(TWO_EPOCHS, [hooks]).fit()
    names = [name for name, _ in hooks.calls]
    assert names == [
        "start",
        *["step", "step", "checkpoint", "epoch"],
        *["grad_norms", "step", "step", "checkpoint", "epoch"],
        "done",
        "close",
    ]
    kinds = dict(hooks.calls)
    assert kinds["start"] is Start and kinds["step"] is Step and kinds["epoch"] is EpochEnd
    assert kinds["grad_norms"] is GradNorms and kinds["done"] is Done
    assert result.state == "done" and result.epochs == 2 and result.steps == 4
    assert result.model is not None and not result.model.training


class _CancelAfter(Callback):
    def __init__(self, steps: int) -> None:
        self.steps, self.flag = steps, threading.Event()

    def on_step(self, trainer, event):
        if event.step >= self.steps:
            self.flag.set()


def test_check_cancel_raises_cancel_run():
    flag = threading.Event()
    trainer = Trainer(QUICK_CPU_RUN, cancel=flag)
    trainer.check_cancel()  # not requested: nothing happens
    flag.set()
    with pytest.raises(CancelRun, match="cancelled at step 0"):
        trainer.check_cancel()


def test_cancel_is_an_exception_reported_as_cancelled(tmp_path):
    stopper = _CancelAfter(3)
    log = EventLog()
    trainer = Trainer(TWO_EPOCHS, [stopper, log], cancel=stopper.flag, run_dir=tmp_path / "r")
    result = trainer.fit()
    assert result.state == "cancelled" and result.steps == 3 and result.epochs == 1
    assert isinstance(log.events[-1], Cancelled) and "step 3" in log.events[-1].message
    assert read_status(tmp_path / "r")["state"] == "cancelled"


class _Boom(Callback):
    def on_step(self, trainer, event):
        raise RuntimeError("disk full")


def test_error_in_training_is_a_failed_event_then_raised(tmp_path):
    log = EventLog()
    with pytest.raises(TrainingFailed, match="disk full"):
        Trainer(QUICK_CPU_RUN, [log, _Boom()], run_dir=tmp_path / "r").fit()
    assert isinstance(log.events[-1], Failed) and log.events[-1].error == "RuntimeError"
    status = read_status(tmp_path / "r")
    assert status["state"] == "failed" and "disk full" in status["message"]


def test_fit_dicts_match_typed_events_and_the_run_folder(tmp_path):
    seen: list[dict] = []
    log = EventLog()
    fit(TWO_EPOCHS, on_event=seen.append, run_dir=tmp_path / "r", callbacks=[log])
    assert seen == [event.to_dict() for event in log.events]
    written = read_metrics(tmp_path / "r")
    assert all(set(record) - {"time"} == set(parse_event(record).to_dict()) for record in written)
    assert [type(e) for e in read_events(tmp_path / "r")][-1] is Done
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "best.pt",
        "config.json",
        "last.pt",
        "metrics.jsonl",
        "spec.json",
        "status.json",
    ]


def test_iter_fit_closed_early_records_stopped_by_the_caller(tmp_path):
    stream = iter_fit({**TWO_EPOCHS, "epochs": 20}, run_dir=tmp_path / "r")
    assert next(stream)["event"] == "start"
    assert next(stream)["event"] == "step"
    stream.close()
    last = read_events(tmp_path / "r")[-1]
    assert isinstance(last, Cancelled) and last.message == "stopped by the caller"


def test_setup_problems_raise_before_any_event_or_folder(tmp_path):
    log = EventLog()
    missing = {**QUICK_CPU_RUN, "dataset": "cifar10", "data_dir": str(tmp_path / "none")}
    trainer = Trainer(missing, [log], run_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="CIFAR-10"):
        trainer.fit()
    assert log.events == [] and not (tmp_path / "r").exists()


# Typed events -------------------------------------------------------------------------------
def test_every_kind_round_trips_through_json():
    for kind, cls in EVENT_TYPES.items():
        event = cls()
        record = json.loads(json.dumps(event.to_dict()))
        assert record["event"] == kind and parse_event(record) == event


@pytest.mark.parametrize(
    "record",
    [
        {"event": "epoch", "epoch": 1, "test_acc": "low"},
        {"event": "step", "step": "3"},
        {"event": "step", "loss": True},
        {"event": "done", "seconds": float("nan")},
        {"event": "nonsense"},
        {"type": "step"},
        ["event", "step"],
    ],
)
def test_malformed_records_are_not_events(record):
    assert parse_event(record) is None


@pytest.mark.skipif(not SHIPPED_RUNS, reason="no shipped demo runs in this checkout")
@pytest.mark.parametrize("run_dir", SHIPPED_RUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_run_folders_read_back_unchanged(run_dir: Path):
    """Runs written before the trainer and its typed events existed load exactly."""
    records = read_metrics(run_dir)
    events = read_events(run_dir)
    assert len(events) == len(records) > 0
    for record, event in zip(records, events):
        written = {k: v for k, v in record.items() if k != "time"}
        read = event.to_dict()
        assert {k: read.get(k) for k in written} == written
        assert all(read[k] is None for k in set(read) - set(written))  # fields added since: unset
    assert isinstance(events[0], Start) and isinstance(events[-1], Done)
    steps, epochs = metrics_frames(events)
    assert len(steps) == sum(isinstance(e, Step) for e in events)
    assert run_info(run_dir).state == "done"
