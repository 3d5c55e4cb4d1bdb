"""A run in one call, with its events as dicts: the adapters around `Trainer` that the app,
the CLI, the job worker and the experiments use.

`fit(config, on_event=...)` trains in the calling thread and hands every event to `on_event`
as a dict (`Event.to_dict()`); `iter_fit(config)` trains in a background thread and yields
those dicts as they happen, cancelling the run if the consumer stops listening.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from resnet_core.training.callbacks import Callback, EventFunction
from resnet_core.training.config import TrainConfig
from resnet_core.training.distributed import Ranks
from resnet_core.training.events import Event
from resnet_core.training.state import FitResult
from resnet_core.training.threads import ThreadTuner, others_busy
from resnet_core.training.trainer import Trainer

__all__ = ["fit", "iter_fit"]


def fit(
    config: TrainConfig | dict,
    on_event: Callable[[dict], Any] | None = None,
    cancel: Any = None,
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    ranks: Ranks | None = None,
    tune_threads: bool = False,
) -> FitResult:
    """Train a network; `on_event` gets every event as a dict (`Event.to_dict()`).

    The events and their fields are the dataclasses in `resnet_core.training.events`.

    Args:
        config: a TrainConfig or its dict.
        on_event: called with every event, in the training thread.
        cancel: anything with is_set() (e.g. threading.Event); checked before every step.
        run_dir: record the run there (spec.json, config.json, metrics.jsonl, status.json,
            last.pt, best.pt); None records nothing.
        resume: a run dir whose last.pt to continue from (also recorded there unless
            run_dir is given).
        callbacks: more listeners, called after `on_event`.
        ranks: this process's place in a data-parallel run under torchrun
            (`resnet_core.training.distributed.ranks_from_env()`); None for one process.
        tune_threads: on a CPU, train on all threads or one, whichever is faster now
            (`resnet_core.training.threads`); else the threads stay as they are.

    Returns:
        FitResult with state "done" or "cancelled".

    Raises:
        ConfigError, DatasetNotFound, RunError: before training starts.
        TrainingFailed: training broke after it started (a "failed" event came first).
    """
    listeners = [EventFunction(on_event)] if on_event is not None else []
    trainer = Trainer(config, [*listeners, *callbacks], cancel, run_dir, resume, ranks=ranks)
    trainer.threads = ThreadTuner(busy=others_busy()) if tune_threads else None
    try:
        return trainer.fit()
    finally:
        if trainer.threads is not None:
            trainer.threads.close()


class _StopSignal:
    """The cancel flag `iter_fit` gives its trainer: the caller's, or its own with a reason."""

    def __init__(self, cancel: Any) -> None:
        self.cancel, self.message = cancel, ""
        self._own = threading.Event()

    def request(self, message: str) -> None:
        self.message = message
        self._own.set()

    def is_set(self) -> bool:
        return self._own.is_set() or (self.cancel is not None and self.cancel.is_set())


class _Forward(Callback):
    def __init__(self, put: Callable[[Event], None]) -> None:
        self.put = put

    def on_event(self, trainer: Any, event: Event) -> None:
        self.put(event)


_END = object()


def iter_fit(
    config: TrainConfig | dict,
    cancel: Any = None,
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
) -> Iterator[dict]:
    """Train in a background thread, yielding event dicts as they happen.

    Problems found before training starts (invalid config, missing data, unavailable
    device, unreadable resume checkpoint) raise before the first event. Errors during
    training yield a "failed" event and then raise TrainingFailed. Closing the generator
    early (or Ctrl-C) cancels the run after its current step and waits for it.
    """
    stop = _StopSignal(cancel)
    events: queue.SimpleQueue = queue.SimpleQueue()
    trainer = Trainer(config, [_Forward(events.put)], stop, run_dir, resume).setup()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            trainer.fit()
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            failure.append(error)
        finally:
            events.put(_END)

    thread = threading.Thread(target=work, name="resnet-explorer-fit", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not _END:
            yield event.to_dict()
    except GeneratorExit:  # the consumer stopped listening: record it as cancelled
        stop.request("stopped by the caller")
        raise
    except KeyboardInterrupt:
        stop.request("interrupted (Ctrl-C)")
        raise
    finally:
        thread.join()
    if failure:
        raise failure[0]
