"""The training engine: a `Trainer` in the shape of torchvision's reference `train.py`
(`train_step`, `train_epoch`, `evaluate`, `checkpoint`, a short `fit` loop) with fastai-style
named events: every listener (run folder, progress bar, job worker) is a `Callback`, and a
cancel request is an exception (`CancelRun`) that `fit` turns into a `Cancelled` event.

`fit(config, on_event=...)` and `iter_fit(config)` are the dict-event adapters the app, the
CLI, the job worker and the experiments use.

Measured here (2-core AMD EPYC with avx512_bf16, torch 2.14, shared machine): ResNet-20,
one epoch on the 50,000 training images with the defaults reaches about 0.5 test accuracy;
see benchmarks/RESULTS.md for times and throughput.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from resnet_core.analysis.probes import grad_norm_rows
from resnet_core.common.device import (
    data_parallel_name,
    device_name,
    memory_budget,
    resolve_device,
)
from resnet_core.common.errors import ConfigError, failure_message, first_line
from resnet_core.nets.model import build_model
from resnet_core.nets.size import check_fits, fmt_bytes
from resnet_core.training.averaging import WeightAverage
from resnet_core.training.callbacks import Callback, EventFunction
from resnet_core.training.config import PRECISIONS, TrainConfig
from resnet_core.training.data import (
    SYNTHETIC_TEST_IMAGES,
    SYNTHETIC_TRAIN_IMAGES,
    Cifar10,
    DeviceLoader,
    load_dataset,
)
from resnet_core.training.distributed import (
    Ranks,
    SharedCancel,
    broadcast_floats,
    join,
    leave,
    local_batch,
    lost_rank_message,
    sum_floats,
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
from resnet_core.training.recipe import (
    auto_precision,
    autocast,
    eval_loader,
    evaluate,
    keep_freed_memory,
    lr_multiplier,
    make_optimizer,
    train_loader,
)
from resnet_core.training.runs import RunError, RunWriter, load_checkpoint

__all__ = [
    "CancelRun",
    "ConfigError",
    "TrainingFailed",
    "TrainConfig",
    "Trainer",
    "FitResult",
    "fit",
    "iter_fit",
    "evaluate",
    "resolve_device",
    "device_name",
    "lr_multiplier",
    "keep_freed_memory",
]

RATE_WINDOW = 20  # logged steps over which images/s (and so the ETA) is averaged


class TrainingFailed(RuntimeError):
    """Training stopped with an error after it started; the message says what to try."""


class CancelRun(Exception):  # noqa: N818 - named after what it does, as fastai's CancelFitException
    """Raised inside the loop when a cancel is requested; `fit` reports it as `Cancelled`."""


@dataclass(frozen=True, eq=False)
class FitResult:
    """How a run ended.

    Attributes:
        state: "done", "cancelled" or "failed" (a lockstep member that broke; `fit` raises).
        best_test_acc: best test accuracy seen (None if never evaluated).
        final_test_acc: test accuracy after the last completed epoch.
        seconds: wall time of the run.
        epochs: epochs completed.
        steps: optimizer steps taken.
        run_dir: where the run was recorded, if anywhere.
        model: the trained network (on the training device, in eval mode); with `ema` on,
            the weight average that was evaluated.
        history: the epoch events.
    """

    state: str
    best_test_acc: float | None
    final_test_acc: float | None
    seconds: float
    epochs: int
    steps: int
    run_dir: str | None
    model: nn.Module | None = None
    history: list[dict] = field(default_factory=list)


# Setup ---------------------------------------------------------------------------------
def load_data(config: TrainConfig) -> Cifar10:
    return load_dataset(
        config.dataset,
        root=config.data_dir,
        download=config.download,
        subset=config.subset,
        seed=config.seed,
    )


IMAGE_BYTES = 3 * 32 * 32 * 5  # one synthetic image while it is made (fp32) and kept (uint8)


def check_resources(config: TrainConfig, device: torch.device) -> None:
    """Refuse, before anything is allocated, a run this device cannot hold: a net too big
    to build, a batch whose training step needs more than half the device's memory, or a
    synthetic set larger than that. ConfigError names the estimate and the limit."""
    budget = memory_budget(device)
    where = device_name(device)
    check_fits(config.spec(), config.batch_size, 32, budget, where, ConfigError)
    if config.synthetic:
        images = (config.subset or SYNTHETIC_TRAIN_IMAGES) + SYNTHETIC_TEST_IMAGES
        if images * IMAGE_BYTES > budget:
            raise ConfigError(
                f"subset: {images:,} synthetic images need about {fmt_bytes(images * IMAGE_BYTES)}, "
                f"more than {where} allows ({fmt_bytes(budget)}); use a smaller subset"
            )


def _loaders(
    config: TrainConfig, data: Cifar10, device: torch.device, ranks: Ranks | None = None
) -> tuple[DeviceLoader, DeviceLoader]:
    """The shuffled, augmented training loader (this rank's part of each batch) and the
    plain test loader."""
    shard = (ranks.rank, ranks.world_size) if ranks is not None else (0, 1)
    return train_loader(config, data, device, shard), eval_loader(config, data, device)


def _step_marker(config: TrainConfig) -> Callable[[], None]:
    """Called before every forward pass: a compiled model's CUDA graphs reuse their output
    buffers, and this tells torch that the previous step's outputs are no longer read."""
    if config.compile and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        return torch.compiler.cudagraph_mark_step_begin
    return lambda: None


def compile_obstacle(config: TrainConfig, device: torch.device) -> str | None:
    """Why torch.compile cannot be used for this run as configured, or None."""
    if config.compile_mode == "reduce-overhead" and device.type != "cuda":
        return (
            f"mode reduce-overhead replays CUDA graphs, which need a CUDA GPU, and this run "
            f"is on {device.type}"
        )
    return None


def _build(config: TrainConfig, data: Cifar10, device: torch.device) -> nn.Module:
    spec = config.spec()
    if spec.num_classes != data.num_classes:
        if not isinstance(config.model, str):
            raise ConfigError(
                f"model: num_classes is {spec.num_classes} but the dataset has "
                f"{data.num_classes} classes; set num_classes to {data.num_classes}"
            )
        spec = spec.replace(num_classes=data.num_classes)
    torch.manual_seed(config.seed)
    model = build_model(spec).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


class EpochTally:
    """What one epoch of one net has seen so far: loss and hits summed on the device (no host
    sync per step), images seen, and the recent (time, images) marks behind images/s."""

    def __init__(self, device: torch.device) -> None:
        self.started = time.perf_counter()
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.int64)
        self.seen = 0
        self.window: deque[tuple[float, int]] = deque([(self.started, 0)], maxlen=RATE_WINDOW)

    def add(self, loss: torch.Tensor, hits: torch.Tensor, count: int) -> None:
        self.loss_sum += loss * count
        self.correct += hits
        self.seen += count

    def result(self) -> tuple[float, float, float]:
        """(mean training loss, training accuracy, seconds since the epoch began)."""
        seconds = time.perf_counter() - self.started
        seen = max(self.seen, 1)
        return float(self.loss_sum) / seen, int(self.correct) / seen, seconds


# The trainer -------------------------------------------------------------------------------
class Trainer:
    """One training run: `setup()` builds everything, `fit()` runs the epoch loop.

    Each piece can be driven on its own (a test can run one step or one epoch):
    `train_step(images, labels)`, `train_epoch(epoch)` (or `begin_epoch` and `fit_batch` per
    batch, as a lockstep group drives it), `evaluate()`, `checkpoint(event, improved)`. Every event goes to the callbacks (`Callback.on_event`); with a `run_dir`
    (or `resume`) a `RunWriter` records the run there.

    With `ranks` (a data-parallel rank under torchrun, `resnet_core.training.distributed`)
    the trainer joins the process group, wraps the model in DistributedDataParallel and
    trains on its part of every global batch; only rank 0 records the run.

    Attributes (after `setup`): config, device, data, model (the network being trained),
    forward (the model or its compiled wrapper), average (the WeightAverage with `ema` on,
    else None), optimizer, scaler, train_loader, test_loader, step, epoch, best_test_acc,
    final_test_acc, history (EpochEnd events).

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
        if run_dir is not None or self.resume is not None:
            self.record_in(run_dir if run_dir is not None else self.resume)
        self.model: nn.Module | None = None
        self.step = self.epoch = self.start_epoch = 0
        self.best_test_acc: float | None = None
        self.final_test_acc: float | None = None
        self.history: list[EpochEnd] = []
        self.outcome: Event | None = None
        self.lr = 0.0
        self.average: WeightAverage | None = None
        self.notes: list[str] = []  # said after the Start event (setup comes before it)
        self._on_trial: set[str] = set()  # compiled phases that have not run once yet
        self._started = time.perf_counter()

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
        """Load data, build model, optimizer and loaders, restore a resumed run.

        Problems found here (missing data, unavailable device, unreadable resume checkpoint)
        raise before any event. Calling it again does nothing.
        """
        if self.model is not None:
            return self
        self.device = resolve_device(self.config.device)
        check_resources(self.config, self.device)
        if self.ranks is not None:
            local_batch(self.config.batch_size, self.ranks)  # refuses a batch that does not split
            self.device = join(self.ranks, self.device)
            self.cancel = SharedCancel(self.cancel, self.device, self.config.log_every)
        config = self._resolve_precision()
        checkpoint = load_checkpoint(self.resume / "last.pt") if self.resume else None
        if self.device.type == "cpu":
            keep_freed_memory()
        if self.data is None:
            self.data = load_data(config)
        model = _build(config, self.data, self.device)
        self.optimizer = make_optimizer(config, model)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        if checkpoint is not None:
            self._restore(model, checkpoint)
        if config.ema > 0:
            self.average = self._average(model, checkpoint)
        self.train_loader, self.test_loader = _loaders(config, self.data, self.device, self.ranks)
        self.eager = self._parallel(model)
        self.forward = self._compiled(self.eager) if config.compile else self.eager
        self.mark_step = _step_marker(config)
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.resumed = checkpoint is not None
        self.model = model
        return self

    def _resolve_precision(self) -> TrainConfig:
        """Settle precision "auto" for this device; the run records (and says) the choice.
        Data-parallel ranks all take rank 0's."""
        if self.config.precision == "auto":
            precision, why = auto_precision(self.device)
            if self.ranks is not None:
                [code] = broadcast_floats([PRECISIONS.index(precision)], self.device)
                precision = PRECISIONS[int(code)]
            self.config = self.config.replace(precision=precision)
            self.notes.append(f"precision auto chose {precision}: {why}")
        return self.config

    def _parallel(self, model: nn.Module) -> nn.Module:
        """The model, wrapped in DistributedDataParallel on a data-parallel rank."""
        if self.ranks is None:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def _compiled(self, forward: nn.Module) -> Callable[..., torch.Tensor]:
        """`forward` wrapped in torch.compile, or `forward` itself, with a note saying why,
        where torch.compile cannot be used here. Compiling happens at the first call:
        `_try_compiled` falls back then."""
        reason = compile_obstacle(self.config, self.device)
        if reason is None:
            try:
                compiled = torch.compile(forward, mode=self.config.compile_mode)
            except Exception as error:  # noqa: BLE001 - any refusal means: train without it
                reason = f"torch.compile raised {type(error).__name__}: {first_line(error)}"
            else:
                self._on_trial = {"training step", "evaluation"}
                return compiled
        self.notes.append(_compile_note(reason))
        return forward

    def _try_compiled(self, phase: str, run: Callable[[], Any]) -> Any:
        """Run `run()`, which calls `self.forward`. The first time `phase` runs compiled, a
        failure (no C compiler, no triton, ...) turns compiling off for the rest of the run,
        says why in a Note, and runs `run()` again on the eager model."""
        if phase not in self._on_trial:
            return run()
        try:
            result = run()
        except (CancelRun, KeyboardInterrupt, torch.OutOfMemoryError):
            raise  # not compiling's fault: the eager model would not do better
        except Exception as error:  # noqa: BLE001 - the eager model is tried next
            reason = f"the first compiled {phase} raised {type(error).__name__}: "
            message = _compile_note(reason + first_line(error))
            self._on_trial = set()
            self.forward = self.eager
            self.emit(Note(step=self.step, epoch=self.epoch, message=message))
            return run()
        self._on_trial.discard(phase)
        return result

    def _average(self, model: nn.Module, checkpoint: dict | None) -> WeightAverage:
        """The weight average; a resumed run's own, or (from a checkpoint without one)
        the weights it resumes from."""
        average = WeightAverage(model, self.config.ema)
        if checkpoint is not None and "live_model" in checkpoint:
            average.load(checkpoint["model"])
        return average

    def _restore(self, model: nn.Module, checkpoint: dict) -> None:
        try:
            model.load_state_dict(checkpoint.get("live_model", checkpoint["model"]))
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if checkpoint.get("scaler"):
                self.scaler.load_state_dict(checkpoint["scaler"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise RunError(
                f"{self.resume / 'last.pt'}: does not match this config's model "
                f"({first_line(error)})"
            ) from None
        self.start_epoch = self.epoch = int(checkpoint["epoch"])
        self.step = int(checkpoint["step"])
        self.best_test_acc = checkpoint.get("best_test_acc")
        self.final_test_acc = checkpoint.get("test_acc")

    # Events --------------------------------------------------------------------------------
    def emit(self, event: Event) -> Event:
        """Hand an event to every callback, in order."""
        for callback in self.callbacks:
            callback.on_event(self, event)
        return event

    def announce(self) -> None:
        """Emit the Start event, then the notes setup left (each once)."""
        self.emit(self.start_event())
        for message in self.notes:
            self.emit(Note(step=self.step, epoch=self.epoch, message=message))
        self.notes = []

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def start_event(self) -> Start:
        config, data, device = self.config, self.data, self.device
        return Start(
            config=config.to_dict(),
            spec=self.model.spec.to_dict(),
            model=config.label(),
            device=device_name(device)
            if self.ranks is None
            else data_parallel_name(device, self.world_size),
            device_type=device.type,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
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
        self._set_lr()
        loss, correct = self._try_compiled(
            "training step", lambda: self._forward_backward(images, labels)
        )
        self.step += 1
        if self.config.grad_norm_every and self.step % self.config.grad_norm_every == 0:
            self.scaler.unscale_(self.optimizer)
            self.emit(GradNorms(step=self.step, epoch=self.epoch, rows=grad_norm_rows(self.model)))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update(self.step)
        return loss, correct

    def _set_lr(self) -> None:
        config = self.config
        self.lr = config.lr * lr_multiplier(
            config.schedule,
            self.step,
            self.total_steps,
            config.warmup,
            milestones=config.milestones,
            gamma=config.gamma,
            steps_per_epoch=self.steps_per_epoch,
            warmup_factor=config.warmup_lr_factor,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def _forward_backward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one batch, no weight change yet: safe to run again."""
        self.mark_step()
        with autocast(self.device, self.config.precision):
            logits = self.forward(images)
            loss = F.cross_entropy(
                logits.float(), labels, label_smoothing=self.config.label_smoothing
            )
        # read the outputs before backward: CUDA graphs may reuse their buffers
        correct = (logits.detach().argmax(1) == labels).sum()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return loss.detach(), correct

    def begin_epoch(self, epoch: int) -> EpochTally:
        """Put the model in training mode for `epoch` and start counting its steps."""
        self.epoch = epoch
        self.model.train()
        self.train_loader.set_epoch(epoch)
        return EpochTally(self.device)

    def fit_batch(self, tally: EpochTally, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One step of the epoch `tally` counts: check for a cancel, step, log when due."""
        self.check_cancel()
        loss, hits = self.train_step(images, labels)
        tally.add(loss, hits, len(labels))
        if self.step % self.config.log_every == 0 or self.step == self.total_steps:
            self._log_step(loss, int(hits) / max(len(labels), 1), tally)

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """Train one epoch; returns (mean training loss, training accuracy, seconds)."""
        tally = self.begin_epoch(epoch)
        for images, labels in self.train_loader:
            self.fit_batch(tally, images, labels)
        if self.ranks is not None:
            self._pool(tally)
        return tally.result()

    def _pool(self, tally: EpochTally) -> None:
        """Sum an epoch's loss, hits and images over the ranks (every rank saw a part)."""
        loss, correct, seen = sum_floats(
            [float(tally.loss_sum), int(tally.correct), tally.seen], self.device
        )
        tally.loss_sum.fill_(loss)
        tally.correct.fill_(int(correct))
        tally.seen = int(seen)

    def _log_step(self, loss: torch.Tensor, accuracy: float, tally: EpochTally) -> None:
        value = float(loss)  # the host sync of a logged step (the batch's hits came with it)
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {self.step}")
        now = time.perf_counter()
        window = tally.window
        window.append((now, tally.seen))
        rate = (window[-1][1] - window[0][1]) / max(window[-1][0] - window[0][0], 1e-9)
        rate *= self.world_size  # every rank trains on as many images as this one
        remaining = self.total_steps - self.step
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
        """The weights evaluation and checkpoints use: the average with `ema` on (with the
        live BatchNorm statistics), else the trained model."""
        return self.average.current() if self.average is not None else self.model

    def evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy of the evaluated weights (`evaluated_model`, with the
        config's test-time augmentation); CancelRun if cancelled part-way."""
        if self.ranks is not None:
            return self._evaluate_on_rank_0()
        if self.average is not None:
            result = self._evaluate_with(self.evaluated_model())
        else:
            result = self._try_compiled("evaluation", lambda: self._evaluate_with(self.forward))
        if result is None:
            self.check_cancel()
            raise CancelRun("cancelled during evaluation")
        return result

    def _evaluate_with(self, model: Callable[..., torch.Tensor]) -> tuple[float, float] | None:
        config = self.config
        return evaluate(
            model, self.test_loader, config.precision, self.cancel, self.mark_step, config.tta
        )

    def _evaluate_on_rank_0(self) -> tuple[float, float]:
        """Rank 0 evaluates its weights (those it saves) and hands the result to the others."""
        result = (0.0, 0.0)
        if self.ranks.main:
            model = self.evaluated_model()
            result = evaluate(model, self.test_loader, self.config.precision, tta=self.config.tta)
        loss, accuracy = broadcast_floats(result, self.device)
        return loss, accuracy

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
        state = {
            "model": self.evaluated_model().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": event.epoch,
            "step": event.step,
            "test_acc": event.test_acc,
            "best_test_acc": event.best_test_acc,
        }
        if self.average is not None:  # "model" holds the average; resuming needs both
            state["live_model"] = self.model.state_dict()
        for callback in self.callbacks:
            callback.on_checkpoint(self, state, improved)

    # The run -------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Set up, train every epoch, and report how it ended.

        Raises TrainingFailed after a `Failed` event if training breaks; Ctrl-C is reported
        as `Cancelled` and re-raised.
        """
        self.setup()
        self._started = time.perf_counter()
        together = False  # every rank reached the same end (done, or a shared cancel)
        try:
            self.announce()
            for epoch in range(self.start_epoch + 1, self.config.epochs + 1):
                train_loss, train_acc, seconds = self.train_epoch(epoch)
                self.end_epoch(epoch, train_loss, train_acc, seconds)
            self.model.eval()
            together = True
            self.outcome = self.emit(self._done_event())
        except CancelRun as stop:
            together = True
            self.outcome = self.emit(self._cancelled_event(str(stop)))
        except KeyboardInterrupt:
            self.outcome = self.emit(self._cancelled_event("interrupted (Ctrl-C)"))
            raise
        except Exception as error:  # noqa: BLE001 - reported as an event, then re-raised
            message = failure_message(error, self.config.batch_size, self.config.lr)
            if self.ranks is not None:
                message = lost_rank_message(error, message)
            self.outcome = self.emit(self._failed_event(message, error))
            raise TrainingFailed(message) from error
        finally:
            for callback in self.callbacks:
                callback.on_close(self)
            if self.ranks is not None:
                leave(together)
        return self.result()

    def _done_event(self) -> Done:
        return Done(
            best_test_acc=self.best_test_acc,
            final_test_acc=self.final_test_acc,
            seconds=self.elapsed(),
            epochs=self.config.epochs,
            steps=self.step,
            synthetic=self.data.synthetic,
        )

    def _cancelled_event(self, message: str) -> Cancelled:
        return Cancelled(
            step=self.step,
            epoch=self.epoch,
            seconds=self.elapsed(),
            best_test_acc=self.best_test_acc,
            message=message,
        )

    def _failed_event(self, message: str, error: BaseException) -> Failed:
        return Failed(
            message=message,
            error=type(error).__name__,
            step=self.step,
            epoch=self.epoch,
            seconds=self.elapsed(),
        )

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
            model=self.evaluated_model() if self.model is not None else None,
            history=[event.to_dict() for event in self.history],
        )


def _compile_note(reason: str) -> str:
    return f"torch.compile is off for this run, which trains the model uncompiled: {reason}"


# Adapters: events as dicts -----------------------------------------------------------------
def fit(
    config: TrainConfig | dict,
    on_event: Callable[[dict], Any] | None = None,
    cancel: Any = None,
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    ranks: Ranks | None = None,
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

    Returns:
        FitResult with state "done" or "cancelled".

    Raises:
        ConfigError, DatasetNotFound, RunError: before training starts.
        TrainingFailed: training broke after it started (a "failed" event came first).
    """
    listeners = [EventFunction(on_event)] if on_event is not None else []
    trainer = Trainer(config, [*listeners, *callbacks], cancel, run_dir, resume, ranks=ranks)
    return trainer.fit()


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

    def on_event(self, trainer: Trainer, event: Event) -> None:
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
