"""Lockstep training: 2 to 4 nets on identical batches, one step of each in turn.

The plain-vs-residual demo wants both curves to grow together from the first seconds, not
one run after the other. A `LockstepGroup` drives one `Trainer` per net through the public
pieces `Trainer.fit` is made of (`start`, `begin_epoch`, `fit_batch`, `end_epoch`, `finish`,
`close`): every batch of the shared loader goes to each member in turn, so all members see
the same images in the same order with the same augmentation. Each member records its own
run folder, in the same format as a single run. A cancel request stops every member; a
member that breaks (a plain net whose loss diverges, say) is reported as failed and the
others carry on. (`resnet_core.views.lockstep` draws such a group's runs.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from resnet_core.common.errors import ConfigError
from resnet_core.training.callbacks import Callback, CancelRun, EventFunction
from resnet_core.training.config import TrainConfig
from resnet_core.training.state import EpochTally, FitResult
from resnet_core.training.threads import ThreadTuner, others_busy
from resnet_core.training.trainer import Trainer

__all__ = [
    "MAX_MEMBERS",
    "MIN_MEMBERS",
    "SHARED_FIELDS",
    "LockstepGroup",
    "check_group",
    "fit_group",
]

MIN_MEMBERS, MAX_MEMBERS = 2, 4
# What decides which batches a net sees, and when its epochs and evaluations happen: members
# must agree on these (they may differ in the net and its optimizer, schedule, precision, ...).
SHARED_FIELDS = (
    "dataset",
    "data_dir",
    "download",
    "subset",
    "seed",
    "batch_size",
    "epochs",
    "device",
    "channels_last",
    "eval_every",
    "eval_batch_size",
    "augment",
    "crop_pad",
    "normalize",
)


def check_group(configs: Sequence[TrainConfig | dict]) -> list[TrainConfig]:
    """Validate the members' configs; ConfigError names the first field they disagree on."""
    if not MIN_MEMBERS <= len(configs) <= MAX_MEMBERS:
        raise ConfigError(
            f"group: {len(configs)} nets; a lockstep group trains {MIN_MEMBERS} to {MAX_MEMBERS}"
        )
    parsed = [TrainConfig.from_dict(config) for config in configs]
    first = parsed[0].to_dict()
    for number, config in enumerate(parsed[1:], start=2):
        values = config.to_dict()
        for name in SHARED_FIELDS:
            if name in first and values.get(name) != first[name]:
                raise ConfigError(
                    f"group: every net must share {name} to see the same batches; net 1 has "
                    f"{first[name]!r}, net {number} ({config.label()}) has {values[name]!r}"
                )
    return parsed


class LockstepGroup:
    """Train several nets on identical batches, one step of each in turn.

    Args:
        configs: 2 to 4 TrainConfigs (or dicts) that agree on `SHARED_FIELDS`.
        run_dirs: one folder per member to record its run in (None records nothing).
        callbacks: listeners given to every member; a callback tells members apart by the
            trainer it is called with (`group.members.index(trainer)`).
        cancel: anything with is_set(); checked before every member's every step.
        threads: on a CPU, tunes the threads between batches (`resnet_core.training.threads`);
            what it changes is said as a Note by every member.
    """

    def __init__(
        self,
        configs: Sequence[TrainConfig | dict],
        run_dirs: Sequence[str | os.PathLike | None] | None = None,
        callbacks: Sequence[Callback] = (),
        cancel: Any = None,
        threads: ThreadTuner | None = None,
    ) -> None:
        parsed = check_group(configs)
        run_dirs = list(run_dirs) if run_dirs is not None else [None] * len(parsed)
        if len(run_dirs) != len(parsed):
            raise ValueError(f"run_dirs: {len(run_dirs)} folders for {len(parsed)} nets")
        self.members = [
            Trainer(config, callbacks, cancel, run_dir)
            for config, run_dir in zip(parsed, run_dirs, strict=True)
        ]
        self.loader = None
        self.threads = threads

    def setup(self) -> LockstepGroup:
        """Set every member up on one copy of the data; the first member's loader feeds all."""
        first = self.members[0].setup()
        for member in self.members[1:]:
            member.data = first.data
            member.setup()
        self.loader = first.state.train_loader
        return self

    def fit(self) -> list[FitResult]:
        """Train every epoch; returns each member's FitResult (done, cancelled or failed)."""
        self.setup()
        active = list(self.members)
        try:
            active = self._each(active, Trainer.start)
            for epoch in range(1, self.members[0].config.epochs + 1):
                active = self._train_epoch(epoch, active)
            for member in active:
                member.finish()
        except CancelRun as stop:
            _finish_all(active, stop)
        except KeyboardInterrupt as stop:
            _finish_all(active, stop)
            raise
        finally:
            for member in self.members:
                member.close()
        return [member.result() for member in self.members]

    def _train_epoch(self, epoch: int, active: list[Trainer]) -> list[Trainer]:
        tallies: dict[Trainer, EpochTally] = {}
        active = self._each(active, lambda m: tallies.__setitem__(m, m.begin_epoch(epoch)))
        self.loader.set_epoch(epoch)  # also when the member that owns it has dropped out
        tuner = self.threads if self.members[0].state.device.type == "cpu" else None
        if tuner is not None:
            tuner.restart()  # the evaluation between epochs is not a batch
        for images, labels in self.loader:
            if not active:
                break
            batch = (images, labels)
            active = self._each(active, lambda m, batch=batch: m.fit_batch(tallies[m], *batch))
            if tuner is not None and (message := tuner.tick()):
                active = self._each(active, lambda m, message=message: m.note(message))
        return self._each(active, lambda m: m.end_epoch(epoch, *tallies[m].result()))

    @staticmethod
    def _each(active: list[Trainer], action: Callable[[Trainer], Any]) -> list[Trainer]:
        """Apply `action` to every active member; one that raises is reported failed and
        dropped. A cancel (or Ctrl-C) goes up to `fit`, which stops them all."""
        kept = []
        for member in active:
            try:
                action(member)
            except (CancelRun, KeyboardInterrupt):
                raise
            except Exception as error:  # noqa: BLE001 - reported as this member's Failed event
                member.finish(error)
                continue
            kept.append(member)
        return kept


def _finish_all(members: list[Trainer], stop: BaseException) -> None:
    """End every member still training as cancelled (a CancelRun or Ctrl-C stops them all)."""
    for member in members:
        member.finish(stop)


def fit_group(
    configs: Sequence[TrainConfig | dict],
    run_dirs: Sequence[str | os.PathLike | None] | None = None,
    on_event: Callable[[int, dict], Any] | None = None,
    cancel: Any = None,
    callbacks: Sequence[Callback] = (),
    tune_threads: bool = False,
) -> list[FitResult]:
    """Train nets in lockstep; `on_event(member_index, event_dict)` gets every event.
    `tune_threads`: on a CPU, train on all threads or one, whichever is faster now.

    Raises ConfigError, DatasetNotFound or RunError before training starts; a member that
    breaks afterwards ends with state "failed" while the others go on.
    """
    threads = ThreadTuner(busy=others_busy()) if tune_threads else None
    group = LockstepGroup(configs, run_dirs, callbacks, cancel, threads)
    if on_event is not None:
        for index, member in enumerate(group.members):
            listener = EventFunction(lambda event, index=index: on_event(index, event))
            member.callbacks.append(listener)
    try:
        return group.fit()
    finally:
        if threads is not None:
            threads.close()
