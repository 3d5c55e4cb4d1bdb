"""What a training run reports: one frozen dataclass per kind of event.

A run emits `Start`, then `Note` when it changed a setting on its own (with the reason),
`Step` (every `log_every` steps) and `GradNorms` (every
`grad_norm_every` steps), an `EpochEnd` after every epoch, and ends with exactly one of
`Done`, `Cancelled` or `Failed`. Callbacks receive these objects (`Callback.on_<kind>`);
`to_dict()` gives the line `metrics.jsonl` stores (`{"event": kind, ...fields}`) and
`parse_event` reads such a line back, old run folders and the shipped results included.
Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from resnet_core.common.records import checked_fields

__all__ = [
    "Event",
    "Start",
    "Step",
    "GradNorms",
    "Note",
    "EpochEnd",
    "Done",
    "Cancelled",
    "Failed",
    "EVENT_TYPES",
    "END_KINDS",
    "parse_event",
]


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` is the value of the "event" key in metrics.jsonl."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record: {"event": kind, field: value, ...} in field order."""
        record: dict[str, Any] = {"event": self.kind}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            record[item.name] = list(value) if isinstance(value, tuple) else value
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Rebuild from `to_dict()` output; unknown keys (e.g. "time") are ignored, missing
        ones take their defaults. Raises ValueError for a wrong kind or a wrong-typed value."""
        if data.get("event") != cls.kind:
            raise ValueError(f"not a {cls.kind!r} event: {data.get('event')!r}")
        return cls(**checked_fields(cls, data, f"{cls.kind} event"))


@dataclass(frozen=True)
class Start(Event):
    """Training is about to take its first step (after setup succeeded)."""

    kind: ClassVar[str] = "start"
    config: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    model: str = ""
    device: str = ""
    device_type: str = ""
    total_steps: int = 0
    steps_per_epoch: int = 0
    epochs: int = 0
    start_epoch: int = 0
    dataset: str = ""
    synthetic: bool = False
    num_train: int = 0
    num_test: int = 0
    classes: list = field(default_factory=list)
    pid: int = 0
    run_dir: str | None = None
    torch: str = ""
    processes: int | None = None  # data-parallel ranks training together (torchrun)


@dataclass(frozen=True)
class AtStep(Event):
    """An event that happened at a step of an epoch (its first two fields)."""

    step: int = 0
    epoch: int = 0


@dataclass(frozen=True)
class Step(AtStep):
    """One optimizer step (emitted every `log_every` steps and after the last one)."""

    kind: ClassVar[str] = "step"
    loss: float = 0.0
    lr: float = 0.0
    images_per_s: float = 0.0
    elapsed: float = 0.0
    eta_s: float = 0.0
    accuracy: float | None = None  # of this step's batch (None in runs logged before it)


@dataclass(frozen=True)
class GradNorms(AtStep):
    """Per-layer gradient and weight norms after a backward pass (rows as in
    `resnet_core.analysis.probes.grad_norm_rows`)."""

    kind: ClassVar[str] = "grad_norms"
    rows: list = field(default_factory=list)


@dataclass(frozen=True)
class Note(AtStep):
    """Something the run changed on its own, said once in words: e.g. torch.compile could
    not be used, so it trains the eager model, and why."""

    kind: ClassVar[str] = "note"
    message: str = ""


@dataclass(frozen=True)
class EpochEnd(Event):
    """An epoch finished; test_* are None when this epoch was not evaluated."""

    kind: ClassVar[str] = "epoch"
    epoch: int = 0
    step: int = 0
    train_loss: float | None = None
    train_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    best_test_acc: float | None = None
    seconds: float = 0.0
    eval_seconds: float = 0.0
    elapsed: float = 0.0


@dataclass(frozen=True)
class Done(Event):
    """Every epoch ran."""

    kind: ClassVar[str] = "done"
    best_test_acc: float | None = None
    final_test_acc: float | None = None
    seconds: float = 0.0
    epochs: int = 0
    steps: int = 0
    synthetic: bool = False


@dataclass(frozen=True)
class Cancelled(AtStep):
    """Stopped on request; last.pt holds the last finished epoch."""

    kind: ClassVar[str] = "cancelled"
    seconds: float = 0.0
    best_test_acc: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Failed(Event):
    """Training broke after it started; `message` says what to try."""

    kind: ClassVar[str] = "failed"
    message: str = ""
    error: str = ""
    step: int = 0
    epoch: int = 0
    seconds: float = 0.0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (Start, Step, GradNorms, Note, EpochEnd, Done, Cancelled, Failed)
}
END_KINDS = ("done", "cancelled", "failed")


def parse_event(record: Any) -> Event | None:
    """The typed event of one metrics.jsonl record, or None if it is not a valid event."""
    if not isinstance(record, dict):
        return None
    cls = EVENT_TYPES.get(record.get("event"))  # type: ignore[arg-type]
    if cls is None:
        return None
    try:
        return cls.from_dict(record)
    except (TypeError, ValueError):
        return None
