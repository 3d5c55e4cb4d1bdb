"""What a run trains with, what an epoch has counted and how the run ended.

`check_resources` refuses a run the device cannot hold before anything is allocated,
`load_data` loads its data set, and `build_state` makes everything else setup builds (model,
optimizer, loss scaler, weight average, loaders, the possibly compiled forward pass) in one
`TrainState`, so a trainer is either set up, its `state` holding all of it, or not (`state`
None): nothing appears on the trainer halfway through its life. `EpochTally` counts one
epoch of one net, and `FitResult` is what a run's caller gets back.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from resnet_core.common.device import device_name, memory_budget
from resnet_core.common.errors import ConfigError, first_line
from resnet_core.exercises.student_nets import student_net
from resnet_core.nets.model import build_model
from resnet_core.nets.size import check_fits, fmt_bytes
from resnet_core.training.averaging import WeightAverage
from resnet_core.training.compiling import CompileFallback
from resnet_core.training.config import TrainConfig
from resnet_core.training.data import (
    SYNTHETIC_TEST_IMAGES,
    SYNTHETIC_TRAIN_IMAGES,
    Cifar10,
    load_dataset,
)
from resnet_core.training.distributed import Ranks, sum_floats, wrap
from resnet_core.training.events import EpochEnd
from resnet_core.training.loader import DeviceLoader
from resnet_core.training.parts import eval_loader, lr_multiplier, make_optimizer, train_loader
from resnet_core.training.runs import RunError

__all__ = [
    "EpochTally",
    "FitResult",
    "TrainState",
    "build_state",
    "check_resources",
    "load_data",
]

RATE_WINDOW = 20  # logged steps over which images/s (and so the ETA) is averaged


def load_data(config: TrainConfig) -> Cifar10:
    """The run's data set (CIFAR-10, a subset of it, or the synthetic stand-in)."""
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


@dataclass(eq=False)
class TrainState:
    """Everything one run trains with, built once by `build_state`.

    Attributes:
        device: where the run trains (this rank's device in a data-parallel run).
        model: the network being trained.
        optimizer: its optimizer.
        schedule: the learning rate at a step (warm-up, then the config's schedule), as
            torchvision's reference builds its lr_scheduler next to the optimizer.
        scaler: the loss scaler of fp16 training (disabled at other precisions).
        average: the WeightAverage with `ema` on, else None.
        train_loader: shuffled, augmented training batches (this rank's part of each).
        test_loader: the plain test set.
        compiling: the forward pass: the model (DDP-wrapped on a rank) or its compiled
            wrapper, with the fallback from the one to the other.
        steps_per_epoch: optimizer steps per epoch.
        total_steps: optimizer steps of the whole run.
    """

    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    scaler: torch.amp.GradScaler
    average: WeightAverage | None
    train_loader: DeviceLoader
    test_loader: DeviceLoader
    compiling: CompileFallback
    steps_per_epoch: int
    total_steps: int

    def evaluated_model(self) -> nn.Module:
        """The weights evaluation and checkpoints use: the average with `ema` on (with the
        live BatchNorm statistics), else the trained model."""
        return self.average.current() if self.average is not None else self.model

    def checkpoint(self, event: EpochEnd) -> dict:
        """What last.pt holds after the epoch `event` ended: the evaluated weights, optimizer
        and scaler state, and with `ema` on the live weights too, which resuming needs (the
        counterpart of `build_state`'s restore)."""
        saved = {
            "model": self.evaluated_model().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": event.epoch,
            "step": event.step,
            "test_acc": event.test_acc,
            "best_test_acc": event.best_test_acc,
        }
        if self.average is not None:  # "model" holds the average; resuming needs both
            saved["live_model"] = self.model.state_dict()
        return saved


def build_state(
    config: TrainConfig,
    data: Cifar10,
    device: torch.device,
    ranks: Ranks | None = None,
    checkpoint: dict | None = None,
    checkpoint_path: str | os.PathLike | None = None,
) -> TrainState:
    """Build the model (from the config's seed), its optimizer and loaders on `device`;
    with `checkpoint` (read from `checkpoint_path`), continue from its weights and optimizer
    state. RunError if the checkpoint does not fit this config's model."""
    model = _build(config, data, device)
    optimizer = make_optimizer(config, model)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    if checkpoint is not None:
        _restore(model, optimizer, scaler, checkpoint, checkpoint_path)
    average = _average(config, model, checkpoint) if config.ema > 0 else None
    shard = (ranks.rank, ranks.world_size) if ranks is not None else (0, 1)
    train, test = train_loader(config, data, device, shard), eval_loader(config, data, device)
    compiling = CompileFallback(wrap(model, ranks, device), config, device)
    return TrainState(
        device=device,
        model=model,
        optimizer=optimizer,
        schedule=_schedule(config, len(train)),
        scaler=scaler,
        average=average,
        train_loader=train,
        test_loader=test,
        compiling=compiling,
        steps_per_epoch=len(train),
        total_steps=len(train) * config.epochs,
    )


def _schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate at each step of the run."""
    total_steps = steps_per_epoch * config.epochs
    return lambda step: (
        config.lr
        * lr_multiplier(
            config.schedule,
            step,
            total_steps,
            config.warmup,
            milestones=config.milestones,
            gamma=config.gamma,
            steps_per_epoch=steps_per_epoch,
            warmup_factor=config.warmup_lr_factor,
        )
    )


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
    if config.student is not None:  # the student's net, from the reference's first weights
        model = _student(config.student, model)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _student(path: str, reference: nn.Module) -> nn.Module:
    """The student's SimpleResNet; ConfigError (one line) for anything their file does wrong."""
    try:
        return student_net(path, reference)
    except ConfigError:
        raise
    except OSError as error:
        raise ConfigError(
            f"student: {os.path.basename(path)} cannot be read ({error.strerror})"
        ) from None
    except Exception as error:  # noqa: BLE001 - the student's code: any error is told
        raise ConfigError(
            f"student: {os.path.basename(path)} raised {type(error).__name__}: {error}"[:300]
        ) from None


def _restore(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    checkpoint: dict,
    path: str | os.PathLike | None,
) -> None:
    """Load a checkpoint's live weights, optimizer and scaler state."""
    try:
        model.load_state_dict(checkpoint.get("live_model", checkpoint["model"]))
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise RunError(
            f"{path}: does not match this config's model ({first_line(error)})"
        ) from None


def _average(config: TrainConfig, model: nn.Module, checkpoint: dict | None) -> WeightAverage:
    """The weight average; a resumed run's own, or (from a checkpoint without one)
    the weights it resumes from."""
    average = WeightAverage(model, config.ema)
    if checkpoint is not None and "live_model" in checkpoint:
        average.load(checkpoint["model"])
    return average


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

    def images_per_s(self) -> float:
        """Images per second over the recent logged steps, this one marked now."""
        self.window.append((time.perf_counter(), self.seen))
        (start, first), (end, last) = self.window[0], self.window[-1]
        return (last - first) / max(end - start, 1e-9)

    def pool(self, device: torch.device) -> None:
        """Sum the epoch's loss, hits and images over the data-parallel ranks (every rank
        saw a part)."""
        loss, correct, seen = sum_floats(
            [float(self.loss_sum), int(self.correct), self.seen], device
        )
        self.loss_sum.fill_(loss)
        self.correct.fill_(int(correct))
        self.seen = int(seen)

    def result(self) -> tuple[float, float, float]:
        """(mean training loss, training accuracy, seconds since the epoch began)."""
        seconds = time.perf_counter() - self.started
        seen = max(self.seen, 1)
        return float(self.loss_sum) / seen, int(self.correct) / seen, seconds


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
