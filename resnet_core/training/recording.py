"""Recording a run in its folder, from its events alone (the layout is in
`resnet_core.training.runs`, which reads such folders back).

`RunWriter` is a callback that learns everything it writes from the events it is handed:
the `Start` event carries the config, the spec, the data set and the planned steps, and
the checkpoint hook carries the state to save. It never reads the trainer that calls it,
so what a run folder holds is what the events say, and a writer can be fed events alone.
"""

from __future__ import annotations

import copy
import io
import json
import os
import socket
import time
from datetime import datetime
from typing import Any

import torch

from resnet_core import __version__
from resnet_core.common.files import read_json, write_bytes_atomic, write_json_atomic
from resnet_core.training import events
from resnet_core.training.callbacks import Callback
from resnet_core.training.runs import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    RunLock,
    claim_run_dir,
)

__all__ = ["RunWriter"]

STEP_WRITE_INTERVAL_S = 0.25  # step events reach metrics.jsonl at most this often
STATUS_WRITE_INTERVAL_S = 1.0


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunWriter(Callback):
    """Records one run's events, status and checkpoints in its folder (a trainer callback).

    The folder's files appear at the `Start` event, once setup has succeeded: spec.json,
    config.json, status.json, then metrics.jsonl (steps throttled), last.pt and best.pt.
    With `resume` the folder must hold the run being continued, whose first start
    status.json keeps.
    """

    def __init__(self, run_dir: str | os.PathLike, resume: bool = False) -> None:
        self.path = claim_run_dir(run_dir, resume)
        if resume:  # refused now, before setup, if another process is recording it
            RunLock(self.path).release()
        self.resume = resume
        self._lock: RunLock | None = None  # taken at Start; nothing is written without it
        self.status: dict[str, Any] = {}
        self.spec: dict[str, Any] = {}  # from the Start event: what every checkpoint records
        self.config: dict[str, Any] = {}
        self.total_steps = 0
        self.versions = {"torch": str(torch.__version__), "resnet_core": str(__version__)}
        self._metrics: Any = None
        self._last_step_write = 0.0
        self._last_status_write = time.monotonic()

    def on_start(self, trainer: Any, event: events.Start) -> None:
        # copies: a later listener changing the event's dicts must not change the checkpoints
        self.spec, self.config = copy.deepcopy(event.spec), copy.deepcopy(event.config)
        self.total_steps = event.total_steps
        self._claim()
        write_json_atomic(self.path / "spec.json", self.spec)
        write_json_atomic(self.path / "config.json", self.config)
        previous = read_json(self.path / "status.json") if self.resume else None
        self.status = _initial_status(event, previous)
        self.status.update(
            device=event.device, total_steps=event.total_steps, epoch=event.start_epoch
        )
        if event.processes:
            self.status["processes"] = event.processes
        self._metrics = open(self.path / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._append(event)
        self._write_status()

    def _claim(self) -> None:
        """Make the folder and lock it; then, holding the lock, check again that it is empty
        (a new run) or holds the run being continued: another process may have claimed it
        after `claim_run_dir` looked."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = RunLock(self.path)
        try:
            claim_run_dir(self.path, self.resume)
        except BaseException:
            lock.release()
            raise
        self._lock = lock

    def _write_status(self) -> None:
        if self._lock is None:
            return
        self.status["updated"] = _now_iso()
        self._last_status_write = time.monotonic()
        write_json_atomic(self.path / "status.json", self.status)

    def _append(self, event: events.Event) -> None:
        if self._metrics is None or self._metrics.closed or self._lock is None:
            return
        record = {"time": round(time.time(), 3), **event.to_dict()}
        self._metrics.write(json.dumps(record, default=str) + "\n")
        self._metrics.flush()

    def on_step(self, trainer: Any, event: events.Step) -> None:
        """Steps reach metrics.jsonl and status.json at most every few hundred ms; the run's
        last step always does (its curve ends where training ended)."""
        now = time.monotonic()
        self.status.update(step=event.step, seconds=event.elapsed, eta_s=event.eta_s)
        last = event.step == self.total_steps
        if last or now - self._last_step_write >= STEP_WRITE_INTERVAL_S:
            self._last_step_write = now
            self._append(event)
        if now - self._last_status_write >= STATUS_WRITE_INTERVAL_S:
            self._write_status()

    def on_grad_norms(self, trainer: Any, event: events.GradNorms) -> None:
        self._append(event)

    def on_note(self, trainer: Any, event: events.Note) -> None:
        self._append(event)

    def on_epoch(self, trainer: Any, event: events.EpochEnd) -> None:
        self._append(event)
        self.status.update(
            epoch=event.epoch,
            step=event.step,
            seconds=event.elapsed,
            best_test_acc=event.best_test_acc,
        )
        if event.test_acc is not None:
            self.status["final_test_acc"] = event.test_acc
        self._write_status()

    def on_done(self, trainer: Any, event: events.Done) -> None:
        self._finish(event, "done", event.seconds, "")
        self.status.update(best_test_acc=event.best_test_acc, final_test_acc=event.final_test_acc)
        self._write_status()

    def on_cancelled(self, trainer: Any, event: events.Cancelled) -> None:
        self._finish(event, "cancelled", event.seconds, event.message)
        self._write_status()

    def on_failed(self, trainer: Any, event: events.Failed) -> None:
        self._finish(event, "failed", event.seconds, event.message)
        self._write_status()

    def _finish(self, event: events.Event, state: str, seconds: float, message: str) -> None:
        self._append(event)
        self.status.update(state=state, seconds=seconds, message=message)
        self.status.pop("eta_s", None)

    def on_checkpoint(self, trainer: Any, state: dict, improved: bool) -> None:
        """Write last.pt (and best.pt when `improved`) atomically."""
        if self._lock is None:
            return
        payload = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "spec": self.spec,
            "config": self.config,
            "versions": self.versions,
            "synthetic": self.status["synthetic"],
            **state,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        write_bytes_atomic(self.path / "last.pt", data)
        if improved:
            write_bytes_atomic(self.path / "best.pt", data)

    def on_close(self, trainer: Any) -> None:
        if self._metrics is not None and not self._metrics.closed:
            self._metrics.close()
        if self._lock is not None:
            self._lock.release()


def _initial_status(start: events.Start, previous: Any) -> dict[str, Any]:
    """status.json of a run that just started (keeping the first start of a resumed run)."""
    status: dict[str, Any] = {
        "state": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _now_iso(),
        "updated": _now_iso(),
        "model": start.model,
        "device": "",
        "dataset": start.dataset,
        "synthetic": bool(start.synthetic),
        "epoch": 0,
        "epochs": start.epochs,
        "step": 0,
        "total_steps": 0,
        "best_test_acc": None,
        "final_test_acc": None,
        "seconds": 0.0,
        "message": "",
    }
    if isinstance(previous, dict):
        status["started"] = previous.get("started", status["started"])
        status["resumed"] = _now_iso()
    return status
