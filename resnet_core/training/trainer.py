"""The training engine: a `Trainer` in the shape of torchvision's reference `train.py`
(`train_step`, `train_epoch`, `evaluate`, `checkpoint`, a short `fit` loop) with fastai-style
named events: every listener (run folder, progress bar, job worker) is a `Callback`, and a
cancel request is an exception (`CancelRun`) that `fit` turns into a `Cancelled` event.

What `setup` builds is one `TrainState` (`state`); the torch.compile fallback is in
`compiling`, the data-parallel parts in `distributed`, the run folder's writer in `recording`.
`resnet_core.training.fitting` holds `fit(config, on_event=...)` and `iter_fit(config)`, the
dict-event adapters around it.

Measured here (2-core AMD EPYC with avx512_bf16, torch 2.14, shared machine): ResNet-20,
one epoch on the 50,000 training images with the defaults reaches about 0.5 test accuracy;
see benchmarks/RESULTS.md for times and throughput.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.analysis.probes import grad_norm_rows
from resnet_core.common.device import data_parallel_name, device_name, resolve_device
from resnet_core.common.errors import ConfigError, failure_message
from resnet_core.training.callbacks import Callback, CancelRun
from resnet_core.training.config import PRECISIONS, TrainConfig
from resnet_core.training.data import Cifar10
from resnet_core.training.distributed import (
    Ranks,
    broadcast_floats,
    enter,
    evaluate_on_rank_0,
    leave,
    lost_rank_message,
)
from resnet_core.training.events import (
    Cancelled,
    Done,
    EpochEnd,
    Event,
    Failed,
    GradNorms,
    Note,
    Start,
    Step,
)
from resnet_core.training.parts import (
    auto_precision,
    autocast,
    evaluate,
    keep_freed_memory,
    lr_multiplier,
)
from resnet_core.training.recording import RunWriter
from resnet_core.training.runs import load_checkpoint
from resnet_core.training.state import (
    EpochTally,
    FitResult,
    TrainState,
    build_state,
    check_resources,
    load_data,
)
from resnet_core.training.threads import ThreadTuner

__all__ = [
    "ConfigError",
    "TrainingFailed",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "resolve_device",
    "device_name",
    "lr_multiplier",
    "keep_freed_memory",
]


class TrainingFailed(RuntimeError):
    """Training stopped with an error after it started; the message says what to try."""


# The trainer -------------------------------------------------------------------------------
class Trainer:
    """One training run: `setup()` builds everything, `fit()` runs the epoch loop.

    Each piece can be driven on its own (a test can run one step or one epoch):
    `train_step(images, labels)`, `train_epoch(epoch)` (or `begin_epoch` and `fit_batch` per
    batch, as a lockstep group drives it), `evaluate()`, `checkpoint(event, improved)`, and
    the run's ends: `start()` (the Start event), `finish(stop)` (its last event) and
    `close()`. Every event goes to the callbacks (`Callback.on_event`); with a `run_dir`
    (or `resume`) a `RunWriter` records the run there.

    With `ranks` (a data-parallel rank under torchrun, `resnet_core.training.distributed`)
    the trainer joins the process group, wraps the model in DistributedDataParallel and
    trains on its part of every global batch; only rank 0 records the run.

    Attributes: config, data, callbacks, run_dir, state (the `TrainState` that `setup`
    builds: device, model, optimizer, loaders, ...; None before), step, epoch,
    best_test_acc, final_test_acc, history (EpochEnd events), outcome (the last event).

    With `compile` on, a torch.compile that cannot be used (at setup or at the first compiled
    step or evaluation) leaves the run on the uncompiled model, and a `Note` says why.
    """

    def __init__(
        self,
        config: TrainConfig | dict,
        callbacks: Sequence[Callback] = (),
        cancel: Any = None,
        run_dir: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None,
        data: Cifar10 | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        self.config = TrainConfig.from_dict(config)
        self.ranks = ranks
        self.world_size = ranks.world_size if ranks is not None else 1
        self.data = data  # loaded in setup() unless given (a lockstep group shares one copy)
        self.cancel = cancel  # anything with is_set(), checked before every step
        self.resume = Path(resume) if resume is not None else None
        self.callbacks: list[Callback] = list(callbacks)
        self.run_dir: str | os.PathLike | None = None
        self.state: TrainState | None = None  # built by setup()
        self.step = self.epoch = self.start_epoch = 0
        self.best_test_acc: float | None = None
        self.final_test_acc: float | None = None
        self.history: list[EpochEnd] = []
        self.outcome: Event | None = None
        self.lr = 0.0
        self.notes: list[str] = []  # said after the Start event (setup comes before it)
        self.threads: ThreadTuner | None = None  # tunes the CPU's threads while training
        self._started = time.perf_counter()
        if run_dir is not None or self.resume is not None:
            self.record_in(run_dir if run_dir is not None else self.resume)

    def record_in(self, run_dir: str | os.PathLike) -> None:
        """Record the run in `run_dir` instead of where it was to be recorded (a RunWriter,
        called before the other callbacks). A data-parallel rank other than 0 records nothing."""
        if self.ranks is not None and not self.ranks.main:
            return
        resuming = self.resume is not None and Path(run_dir).resolve() == self.resume.resolve()
        writer = RunWriter(run_dir, resume=resuming)  # refuses a folder holding another run
        self.run_dir = run_dir
        others = [callback for callback in self.callbacks if not isinstance(callback, RunWriter)]
        self.callbacks = [writer, *others]

    # Setup ---------------------------------------------------------------------------------
    def setup(self) -> Trainer:
        """Load data, build model, optimizer and loaders (`state`), restore a resumed run.

        Problems found here (missing data, unavailable device, unreadable resume checkpoint)
        raise before any event. Calling it again does nothing.
        """
        if self.state is not None:
            return self
        device = resolve_device(self.config.device)
        check_resources(self.config, device)
        if self.ranks is not None:  # refuses a batch that does not split, then joins
            batch, every = self.config.batch_size, self.config.log_every
            device, self.cancel = enter(self.ranks, batch, device, self.cancel, every)
        config = self._resolve_precision(device)
        checkpoint = load_checkpoint(self.resume / "last.pt") if self.resume else None
        if device.type == "cpu":
            keep_freed_memory()
        if self.data is None:
            self.data = load_data(config)
        where = self.resume / "last.pt" if self.resume else None
        state = build_state(config, self.data, device, self.ranks, checkpoint, where)
        if checkpoint is not None:
            self.start_epoch = self.epoch = int(checkpoint["epoch"])
            self.step = int(checkpoint["step"])
            self.best_test_acc = checkpoint.get("best_test_acc")
            self.final_test_acc = checkpoint.get("test_acc")
        if state.compiling.note is not None:
            self.notes.append(state.compiling.note)
        self.state = state
        return self

    def _resolve_precision(self, device: torch.device) -> TrainConfig:
        """Settle precision "auto" for this device; the run records (and says) the choice.
        Data-parallel ranks all take rank 0's."""
        if self.config.precision == "auto":
            precision, why = auto_precision(device)
            if self.ranks is not None:
                [code] = broadcast_floats([PRECISIONS.index(precision)], device)
                precision = PRECISIONS[int(code)]
            self.config = self.config.replace(precision=precision)
            self.notes.append(f"precision auto chose {precision}: {why}")
        return self.config

    # Events --------------------------------------------------------------------------------
    def emit(self, event: Event) -> Event:
        """Hand an event to every callback, in order."""
        for callback in self.callbacks:
            callback.on_event(self, event)
        return event

    def note(self, message: str) -> None:
        """Emit a Note: something the run changed on its own, and why."""
        self.emit(Note(step=self.step, epoch=self.epoch, message=message))

    def elapsed(self) -> float:
        """Seconds since the run started (`start`)."""
        return time.perf_counter() - self._started

    def start_event(self) -> Start:
        """The Start event: what this run trains, where, on which data, for how long."""
        config, data, state = self.config, self.data, self.state
        return Start(
            config=config.to_dict(),
            spec=state.model.spec.to_dict(),
            model=config.label(),
            device=device_name(state.device)
            if self.ranks is None
            else data_parallel_name(state.device, self.world_size),
            device_type=state.device.type,
            total_steps=state.total_steps,
            steps_per_epoch=state.steps_per_epoch,
            epochs=config.epochs,
            start_epoch=self.start_epoch,
            dataset=data.source,
            synthetic=data.synthetic,
            num_train=len(data.train_labels),
            num_test=len(data.test_labels),
            classes=list(data.classes),
            pid=os.getpid(),
            run_dir=str(self.run_dir) if self.run_dir else None,
            torch=str(torch.__version__),
            processes=self.world_size if self.ranks is not None else None,
        )

    # One step, one epoch, one evaluation -----------------------------------------------------
    def check_cancel(self) -> None:
        """Raise CancelRun if a cancel was requested."""
        if self.cancel is not None and self.cancel.is_set():
            message = getattr(self.cancel, "message", "") or (
                f"cancelled at step {self.step} (epoch {self.epoch}); "
                "last.pt holds the last finished epoch"
            )
            raise CancelRun(message)

    def train_step(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns the detached loss and the number of correct
        predictions, both still on the device (no host sync)."""
        state = self.state
        self.lr = state.schedule(self.step)
        for group in state.optimizer.param_groups:
            group["lr"] = self.lr
        loss, correct = state.compiling.attempt(
            "training step", lambda: self._forward_backward(images, labels), self.note
        )
        self.step += 1
        if self.config.grad_norm_every and self.step % self.config.grad_norm_every == 0:
            state.scaler.unscale_(state.optimizer)
            self.emit(GradNorms(step=self.step, epoch=self.epoch, rows=grad_norm_rows(state.model)))
        state.scaler.step(state.optimizer)
        state.scaler.update()
        if state.average is not None:
            state.average.update(self.step)
        return loss, correct

    def _forward_backward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one batch, no weight change yet: safe to run again."""
        state = self.state
        state.compiling.mark_step()
        with autocast(state.device, self.config.precision):
            logits = state.compiling.forward(images)
            loss = F.cross_entropy(
                logits.float(), labels, label_smoothing=self.config.label_smoothing
            )
        # read the outputs before backward: CUDA graphs may reuse their buffers
        correct = (logits.detach().argmax(1) == labels).sum()
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        return loss.detach(), correct

    def begin_epoch(self, epoch: int) -> EpochTally:
        """Put the model in training mode for `epoch` and start counting its steps."""
        self.epoch = epoch
        self.state.model.train()
        self.state.train_loader.set_epoch(epoch)
        return EpochTally(self.state.device)

    def fit_batch(self, tally: EpochTally, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One step of the epoch `tally` counts: check for a cancel, step, log when due."""
        self.check_cancel()
        loss, hits = self.train_step(images, labels)
        tally.add(loss, hits, len(labels))
        if self.step % self.config.log_every == 0 or self.step == self.state.total_steps:
            self._log_step(loss, int(hits) / max(len(labels), 1), tally)

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """Train one epoch; returns (mean training loss, training accuracy, seconds)."""
        tally = self.begin_epoch(epoch)
        tuner = self.threads if self.state.device.type == "cpu" else None
        if tuner is not None:
            tuner.restart()  # the evaluation between epochs is not a batch
        for images, labels in self.state.train_loader:
            self.fit_batch(tally, images, labels)
            if tuner is not None and (message := tuner.tick()):
                self.note(message)
        if self.ranks is not None:
            tally.pool(self.state.device)
        return tally.result()

    def _log_step(self, loss: torch.Tensor, accuracy: float, tally: EpochTally) -> None:
        value = float(loss)  # the host sync of a logged step (the batch's hits came with it)
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {self.step}")
        rate = tally.images_per_s() * self.world_size  # every rank trains as many as this one
        remaining = self.state.total_steps - self.step
        self.emit(
            Step(
                step=self.step,
                epoch=self.epoch,
                loss=value,
                lr=self.lr,
                images_per_s=rate,
                elapsed=self.elapsed(),
                eta_s=remaining * self.config.batch_size / max(rate, 1e-9),
                accuracy=accuracy,
            )
        )

    def evaluated_model(self) -> nn.Module:
        """The weights evaluation and checkpoints use (`TrainState.evaluated_model`)."""
        return self.state.evaluated_model()

    def evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy of the evaluated weights (`evaluated_model`, with the
        config's test-time augmentation); CancelRun if cancelled part-way. On data-parallel
        ranks, rank 0 evaluates (uncompiled, not to be stopped half-way) for all."""
        state, config = self.state, self.config
        if self.ranks is not None:
            model, loader = self.evaluated_model, state.test_loader
            at_once = lambda: evaluate(model(), loader, config.precision, tta=config.tta)  # noqa: E731
            return evaluate_on_rank_0(self.ranks, state.device, at_once)
        if state.average is not None:
            result = self._evaluate_with(self.evaluated_model())
        else:
            run = lambda: self._evaluate_with(state.compiling.forward)  # noqa: E731
            result = state.compiling.attempt("evaluation", run, self.note)
        if result is None:
            self.check_cancel()
            raise CancelRun("cancelled during evaluation")
        return result

    def _evaluate_with(self, model: Callable[..., torch.Tensor]) -> tuple[float, float] | None:
        config, state = self.config, self.state
        mark = state.compiling.mark_step
        return evaluate(model, state.test_loader, config.precision, self.cancel, mark, config.tta)

    def end_epoch(
        self, epoch: int, train_loss: float, train_acc: float, seconds: float
    ) -> EpochEnd:
        """Evaluate when due, checkpoint, and emit the epoch's event."""
        started = time.perf_counter()
        test_loss = test_acc = None
        if epoch % self.config.eval_every == 0 or epoch == self.config.epochs:
            test_loss, test_acc = self.evaluate()
            self.final_test_acc = test_acc
        improved = test_acc is not None and (
            self.best_test_acc is None or test_acc > self.best_test_acc
        )
        if improved:
            self.best_test_acc = test_acc
        event = EpochEnd(
            epoch=epoch,
            step=self.step,
            train_loss=train_loss,
            train_acc=train_acc,
            test_loss=test_loss,
            test_acc=test_acc,
            best_test_acc=self.best_test_acc,
            seconds=seconds,
            eval_seconds=time.perf_counter() - started,
            elapsed=self.elapsed(),
        )
        self.history.append(event)
        self.checkpoint(event, improved)
        return self.emit(event)

    def checkpoint(self, event: EpochEnd, improved: bool) -> None:
        """Offer the state after an epoch to the callbacks (RunWriter saves last.pt/best.pt)."""
        saved = self.state.checkpoint(event)
        for callback in self.callbacks:
            callback.on_checkpoint(self, saved, improved)

    # The run -------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Set up, train every epoch, and report how it ended.

        Raises TrainingFailed after a `Failed` event if training breaks; Ctrl-C is reported
        as `Cancelled` and re-raised.
        """
        self.setup()
        together = False  # every rank reached the same end (done, or a shared cancel)
        try:
            self.start()
            for epoch in range(self.start_epoch + 1, self.config.epochs + 1):
                train_loss, train_acc, seconds = self.train_epoch(epoch)
                self.end_epoch(epoch, train_loss, train_acc, seconds)
            together = True
            self.finish()
        except CancelRun as stop:
            together = True
            self.finish(stop)
        except KeyboardInterrupt as stop:
            self.finish(stop)
            raise
        except Exception as error:  # noqa: BLE001 - reported as an event, then re-raised
            raise TrainingFailed(self.finish(error).message) from error
        finally:
            self.close(together)
        return self.result()

    def start(self) -> None:
        """Start the run's clock and emit the Start event, then the notes setup left."""
        self._started = time.perf_counter()
        self.emit(self.start_event())
        for message in self.notes:
            self.note(message)
        self.notes = []

    def finish(self, stop: BaseException | None = None) -> Any:
        """Emit the run's last event, kept as `outcome`, and return it: `Done` when `stop` is
        None (every epoch ran; the model goes to eval mode), `Cancelled` for a CancelRun or
        Ctrl-C, `Failed` for any other error, with a message that says what to try."""
        if stop is None:
            self.state.model.eval()
        self.outcome = self.emit(self._ending(stop))
        return self.outcome

    def _ending(self, stop: BaseException | None) -> Event:
        """The last event of a run that `stop` ended (None: every epoch ran)."""
        if stop is None:
            return Done(
                best_test_acc=self.best_test_acc,
                final_test_acc=self.final_test_acc,
                seconds=self.elapsed(),
                epochs=self.config.epochs,
                steps=self.step,
                synthetic=self.data.synthetic,
            )
        if isinstance(stop, (CancelRun, KeyboardInterrupt)):
            return Cancelled(
                step=self.step,
                epoch=self.epoch,
                seconds=self.elapsed(),
                best_test_acc=self.best_test_acc,
                message=str(stop) if isinstance(stop, CancelRun) else "interrupted (Ctrl-C)",
            )
        message = failure_message(stop, self.config.batch_size, self.config.lr)
        if self.ranks is not None:
            message = lost_rank_message(stop, message)
        return Failed(
            message=message,
            error=type(stop).__name__,
            step=self.step,
            epoch=self.epoch,
            seconds=self.elapsed(),
        )

    def close(self, together: bool = False) -> None:
        """Tell every callback the run has ended, however it ended (`on_close`); then a
        data-parallel rank leaves the process group, first waiting for the other ranks if
        `together` (every rank reached the same end)."""
        for callback in self.callbacks:
            callback.on_close(self)
        if self.ranks is not None:
            leave(together)

    def result(self) -> FitResult:
        """How the run ended, as a FitResult (state "done", "cancelled" or "failed")."""
        outcome = self.outcome
        tested = [e.test_acc for e in self.history if e.test_acc is not None]
        finished = isinstance(outcome, Done)
        return FitResult(
            state={Cancelled: "cancelled", Failed: "failed"}.get(type(outcome), "done"),
            best_test_acc=self.best_test_acc,
            final_test_acc=self.final_test_acc if finished else (tested[-1] if tested else None),
            seconds=float(getattr(outcome, "seconds", 0.0)),
            epochs=self.history[-1].epoch if self.history else 0,
            steps=self.step,
            run_dir=str(self.run_dir) if self.run_dir else None,
            model=self.evaluated_model() if self.state is not None else None,
            history=[event.to_dict() for event in self.history],
        )
