"""Callbacks: what the trainer tells the outside world, one named hook per event.

The trainer knows none of its listeners: it calls `on_event(trainer, event)` on each callback
for every event, and the default `on_event` hands the event to the hook named after its kind
(`on_start`, `on_step`, `on_grad_norms`, `on_note`, `on_epoch`, `on_done`, `on_cancelled`,
`on_failed`). `on_checkpoint` receives the state to save after every epoch and `on_close`
runs once the run has ended, however it ended. Override only the hooks you need.

Every hook gets the `resnet_core.training.trainer.Trainer` that calls it, typed `Any` here:
the trainer imports this module, so this module names nothing of the trainer's. Stopping a
run is an exception, `CancelRun` (as fastai's `CancelFitException`): the trainer raises it
when a cancel is requested, a hook may raise it too, and the run ends as `Cancelled`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resnet_core.training import events

__all__ = ["Callback", "CancelRun", "EventFunction", "EventLog"]


class CancelRun(Exception):  # noqa: N818 - named after what it does, as fastai's CancelFitException
    """Raised inside the loop when a cancel is requested; the run reports it as `Cancelled`."""


class Callback:
    """Base class: every hook does nothing."""

    def on_event(self, trainer: Any, event: events.Event) -> None:
        """Called for every event; dispatches to the hook named after the event's kind."""
        getattr(self, f"on_{event.kind}")(trainer, event)

    def on_start(self, trainer: Any, event: events.Start) -> None:
        """Setup succeeded; the first step comes next."""

    def on_step(self, trainer: Any, event: events.Step) -> None:
        """A logged optimizer step."""

    def on_grad_norms(self, trainer: Any, event: events.GradNorms) -> None:
        """Per-layer gradient norms after a backward pass."""

    def on_note(self, trainer: Any, event: events.Note) -> None:
        """The run changed a setting on its own; `event.message` says what and why."""

    def on_epoch(self, trainer: Any, event: events.EpochEnd) -> None:
        """An epoch ended (after `on_checkpoint`)."""

    def on_checkpoint(self, trainer: Any, state: dict, improved: bool) -> None:
        """The state to save after an epoch; `improved` when the test accuracy is the best yet."""

    def on_done(self, trainer: Any, event: events.Done) -> None:
        """Every epoch ran."""

    def on_cancelled(self, trainer: Any, event: events.Cancelled) -> None:
        """The run stopped on request (or Ctrl-C)."""

    def on_failed(self, trainer: Any, event: events.Failed) -> None:
        """The run broke after it started."""

    def on_close(self, trainer: Any) -> None:
        """The run ended, however it ended: release files and threads here."""


class EventFunction(Callback):
    """Calls `function(event.to_dict())` for every event: the dict interface of `fit`."""

    def __init__(self, function: Callable[[dict[str, Any]], Any]) -> None:
        self.function = function

    def on_event(self, trainer: Any, event: events.Event) -> None:
        self.function(event.to_dict())


class EventLog(Callback):
    """Keeps every event in `events`, in order (for tests and short scripts)."""

    def __init__(self) -> None:
        self.events: list[events.Event] = []

    def on_event(self, trainer: Any, event: events.Event) -> None:
        self.events.append(event)
