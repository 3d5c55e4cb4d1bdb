"""Training engine: one frozen config, a generator of events, checkpoints through run dirs.

Recipe for short CPU runs: SGD with Nesterov momentum, a one-cycle learning rate (Smith &
Topin 2017, https://arxiv.org/abs/1708.07120), label smoothing (Szegedy et al. 2016,
https://arxiv.org/abs/1512.00567), bf16 autocast and a device-resident data loader
(`resnet_core.data.DeviceLoader`, after cifar10-airbench).

Measured here (2-core AMD EPYC with avx512_bf16, torch 2.14, shared machine): ResNet-20,
one epoch on the 50,000 training images with the defaults reaches about 0.5 test accuracy;
see benchmarks/RESULTS.md for times and throughput.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import Cifar10, DeviceLoader, load_dataset
from .model import build_model
from .spec import ArchSpec, SpecError, check_fields, resolve_spec, spec_label

__all__ = [
    "ConfigError",
    "TrainingFailed",
    "TrainConfig",
    "FitResult",
    "fit",
    "iter_fit",
    "evaluate",
    "resolve_device",
    "device_name",
    "lr_multiplier",
    "keep_freed_memory",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "onecycle")
PRECISIONS = ("fp32", "bf16", "fp16")
# torch.compile modes; the two with CUDA graphs replay a whole forward or backward as one
# launch on CUDA, which is what short-step GPU runs are limited by (benchmarks/RESULTS.md).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DATASETS = ("cifar10", "synthetic")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
EVAL_BATCH_SIZE = 1000


class ConfigError(ValueError):
    """A training setting is invalid; the message names the field, the value and what is allowed."""


class TrainingFailed(RuntimeError):
    """Training stopped with an error after it started; the message says what to try."""


def _whole(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise ConfigError(f"{name}: {value!r} is not a whole number; use an integer >= {minimum}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name}: {value} is out of range; it must be {allowed}")
    return value


def _number(name: str, value: Any, low: float, high: float, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: {value!r} is not a number; use a value in [{low}, {high}]")
    value = float(value)
    if value < low or value > high or (high_open and value >= high):
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name}: {value} is out of range; it must be in [{low}, {high}{bracket}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not allowed; choose one of {', '.join(allowed)}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not allowed; use true or false")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; JSON round-trips through to_dict/from_dict.

    Attributes:
        model: preset name (e.g. "resnet20") or an ArchSpec dict.
        epochs: passes over the training set.
        batch_size: images per step.
        optimizer: "sgd", "adam" or "adamw".
        lr: peak learning rate.
        momentum: SGD momentum (beta1 for Adam/AdamW).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty on conv/linear weights (not on BatchNorm or biases).
        schedule: "onecycle" (linear warm-up then linear decay to 0), "cosine" (warm-up then
            cosine to 0) or "step" (x0.1 at 50% and 75% of the steps, as He et al. 2016).
        warmup: fraction of all steps spent warming up, in [0, 1).
        label_smoothing: cross-entropy label smoothing, in [0, 1).
        seed: seeds initialisation, shuffling and augmentation.
        device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps".
        precision: "fp32", or autocast to "bf16" or "fp16" (fp16 uses a gradient scaler).
        channels_last: NHWC memory format for model and batches.
        compile: wrap the model in torch.compile (slow to start; see benchmarks/RESULTS.md).
        compile_mode: torch.compile mode when `compile` is on: "default", "reduce-overhead"
            (CUDA graphs), "max-autotune" or "max-autotune-no-cudagraphs".
        subset: train on the first N images, stratified by class (synthetic: the train size).
        data_dir: folder with CIFAR-10; None means $RESNET_EXPLORER_DATA, else ./data.
        dataset: "cifar10" or "synthetic" (a generated stand-in, flagged wherever shown).
        download: let torchvision download CIFAR-10 into data_dir if it is missing.
        eval_every: evaluate on the test set every N epochs (and always after the last).
        grad_norm_every: emit per-layer gradient norms every N steps (0 = off).
        log_every: read the loss back and emit a step event every N steps (1 = every step;
            larger values avoid a device sync per step on GPUs).
        eval_batch_size: images per evaluation batch.
    """

    model: str | dict = "resnet20"
    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup: float = 0.2
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "bf16"
    channels_last: bool = True
    compile: bool = False
    compile_mode: str = "default"
    subset: int | None = None
    data_dir: str | None = None
    dataset: str = "cifar10"
    download: bool = False
    eval_every: int = 1
    grad_norm_every: int = 0
    log_every: int = 1
    eval_batch_size: int = EVAL_BATCH_SIZE

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, at construction
        if isinstance(self.model, ArchSpec):
            set_(self, "model", self.model.to_dict())
        try:
            resolve_spec(self.model)
        except SpecError as error:
            raise ConfigError(f"model: {error}") from None
        if isinstance(self.model, dict):
            set_(self, "model", resolve_spec(self.model).to_dict())
        set_(self, "epochs", _whole("epochs", self.epochs, 1, 100_000))
        set_(self, "batch_size", _whole("batch_size", self.batch_size, 1, 1 << 16))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        set_(self, "lr", _number("lr", self.lr, 0.0, 100.0))
        if self.lr <= 0:
            raise ConfigError(f"lr: {self.lr} must be > 0, e.g. 0.1 for sgd or 1e-3 for adam")
        set_(self, "momentum", _number("momentum", self.momentum, 0.0, 1.0, high_open=True))
        _flag("nesterov", self.nesterov)
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ConfigError("nesterov: true needs momentum > 0; set momentum or nesterov false")
        set_(self, "weight_decay", _number("weight_decay", self.weight_decay, 0.0, 1.0))
        _choice("schedule", self.schedule, SCHEDULES)
        set_(self, "warmup", _number("warmup", self.warmup, 0.0, 1.0, high_open=True))
        set_(
            self,
            "label_smoothing",
            _number("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True),
        )
        set_(self, "seed", _whole("seed", self.seed, 0, 2**31 - 1))
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            raise ConfigError(
                f"device: {self.device!r} is not allowed; choose auto, cpu, cuda, cuda:N or mps"
            )
        _choice("precision", self.precision, PRECISIONS)
        _flag("channels_last", self.channels_last)
        _flag("compile", self.compile)
        _choice("compile_mode", self.compile_mode, COMPILE_MODES)
        if self.subset is not None:
            set_(self, "subset", _whole("subset", self.subset, 10))
        if self.data_dir is not None:
            if not isinstance(self.data_dir, (str, os.PathLike)):
                raise ConfigError(f"data_dir: {self.data_dir!r} is not a folder path")
            set_(self, "data_dir", str(self.data_dir))
        _choice("dataset", self.dataset, DATASETS)
        _flag("download", self.download)
        set_(self, "eval_every", _whole("eval_every", self.eval_every, 1))
        set_(self, "grad_norm_every", _whole("grad_norm_every", self.grad_norm_every, 0))
        set_(self, "log_every", _whole("log_every", self.log_every, 1))
        set_(self, "eval_batch_size", _whole("eval_batch_size", self.eval_batch_size, 1, 1 << 16))

    @property
    def synthetic(self) -> bool:
        return self.dataset == "synthetic"

    def spec(self) -> ArchSpec:
        """The ArchSpec of `model`."""
        return resolve_spec(self.model)

    def label(self) -> str:
        """Short model name for tables: the preset name or a custom description."""
        return self.model if isinstance(self.model, str) else spec_label(self.spec())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `TrainConfig.from_dict` reverses it."""
        data = dataclasses.asdict(self)
        if isinstance(self.model, dict):
            data["model"] = dict(self.model)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """Build from a dict (e.g. parsed config.json); unknown keys raise ConfigError."""
        if isinstance(data, TrainConfig):
            return data
        return cls(**check_fields(cls, data, ConfigError, "config"))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True, eq=False)
class FitResult:
    """How a run ended.

    Attributes:
        state: "done", "cancelled" (or "failed" when read back from a run dir).
        best_test_acc: best test accuracy seen (None if never evaluated).
        final_test_acc: test accuracy after the last completed epoch.
        seconds: wall time of the run.
        epochs: epochs completed.
        steps: optimizer steps taken.
        run_dir: where the run was recorded, if anywhere.
        model: the trained network (on the training device, in eval mode).
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


# Devices and precision ---------------------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" -> cuda, then mps, then cpu; an unavailable device raises ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: {name!r} is not available (no CUDA GPU visible to torch "
                f"{torch.__version__}); use --device cpu or --device auto"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {name!r} does not exist; this machine has "
                f"{torch.cuda.device_count()} GPU(s): use cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
            )
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device: 'mps' is not available here; use --device cpu or auto")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """Human description, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def _autocast(device: torch.device, precision: str):
    """Autocast context for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREED_BYTES = 1 << 30  # freed heap memory kept for reuse, up to 1 GiB
_HEAP_ALLOCATION_LIMIT = 32 << 20  # glibc's maximum for M_MMAP_THRESHOLD on 64-bit


def keep_freed_memory() -> bool:
    """Let glibc reuse freed activation buffers instead of returning them to the OS.

    A CPU training step allocates and frees tens of MB of activations. By default glibc
    serves large blocks with fresh mmaps or trims them back to the OS, so every step touches
    new pages: about 18,000 page faults per ResNet-20 step at batch 64 in fp32. Avoiding them
    makes bf16 training 5-11 % faster on the 2-core dev VM (benchmarks/RESULTS.md). Raising the mmap and trim thresholds keeps
    those pages in the heap; the process then holds its peak memory until it exits, the
    trade that tcmalloc and jemalloc make too. Process-wide; returns False where it does not
    apply (not glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _HEAP_ALLOCATION_LIMIT)
        and mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES)
    )


# Schedule and optimizer --------------------------------------------------------------------
def lr_multiplier(schedule: str, step: int, total_steps: int, warmup: float) -> float:
    """Learning-rate factor for `step` (0-based) out of `total_steps`."""
    total = max(total_steps, 1)
    warm = int(round(warmup * total))
    if step < warm:
        return (step + 1) / warm  # linear warm-up, never exactly 0
    if schedule == "step":
        return 0.1 ** ((step >= 0.5 * total) + (step >= 0.75 * total))
    progress = (step - warm) / max(total - warm, 1)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(1.0 - progress, 0.0)  # onecycle: linear decay to 0 after the peak


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only; BatchNorm and biases are not decayed."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
        )
    betas = (config.momentum, 0.999)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=betas)
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas)


# Evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    precision: str = "fp32",
    cancel: Any = None,
    mark_step: Callable[[], None] | None = None,
) -> tuple[float, float] | None:
    """Mean cross-entropy and accuracy (a fraction) over a loader, in eval mode.

    `mark_step` is called before each batch (a compiled model with CUDA graphs needs it).
    Returns None if `cancel` was set part-way.
    """
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.int64)
    count = 0
    try:
        for images, labels in loader:
            if cancel is not None and cancel.is_set():
                return None
            if mark_step is not None:
                mark_step()
            with _autocast(loader.device, precision):
                logits = model(images)
            total_loss += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
            count += len(labels)
    finally:
        model.train(was_training)
    return float(total_loss) / max(count, 1), int(correct) / max(count, 1)


def friendly_error(error: BaseException, config: TrainConfig) -> str:
    """One line a user can act on."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    oom = getattr(torch, "OutOfMemoryError", None)
    if (oom is not None and isinstance(error, oom)) or "out of memory" in text.lower():
        smaller = max(config.batch_size // 2, 1)
        return (
            f"out of memory with batch size {config.batch_size}; try a smaller batch size "
            f"(--batch-size {smaller}) or a smaller model"
        )
    if "nan" in text.lower() and "loss" in text.lower():
        return f"{text}; try a lower learning rate (--lr {config.lr / 10:g})"
    return f"{type(error).__name__}: {text}"


# Training ----------------------------------------------------------------------------------
def _load_data(config: TrainConfig) -> Cifar10:
    return load_dataset(
        config.dataset,
        root=config.data_dir,
        download=config.download,
        subset=config.subset,
        seed=config.seed,
    )


def _step_marker(config: TrainConfig) -> Callable[[], None]:
    """Called before every forward pass: a compiled model's CUDA graphs reuse their output
    buffers, and this tells torch that the previous step's outputs are no longer read."""
    if config.compile and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        return torch.compiler.cudagraph_mark_step_begin
    return lambda: None


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


def iter_fit(
    config: TrainConfig | dict,
    cancel: Any = None,
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    _holder: dict | None = None,
) -> Iterator[dict]:
    """Train, yielding event dicts as they happen (see `fit` for the events).

    Problems found before training starts (invalid config, missing data, unavailable
    device, unreadable resume checkpoint) raise before the first event. Errors during
    training yield a "failed" event and then raise TrainingFailed.
    """
    from . import runs  # runs imports this module for TrainConfig

    config = TrainConfig.from_dict(config)
    device = resolve_device(config.device)
    checkpoint = None
    if resume is not None:
        resume = Path(resume)
        checkpoint = runs.load_checkpoint(resume / "last.pt")
        run_dir = run_dir if run_dir is not None else resume
    if device.type == "cpu":
        keep_freed_memory()
    data = _load_data(config)
    model = _build(config, data, device)
    spec = model.spec
    optimizer = _make_optimizer(config, model)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    start_epoch, step, best, history = 0, 0, None, []
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise runs.RunError(
                f"{resume / 'last.pt'}: does not match this config's model ({str(error).splitlines()[0]})"
            ) from None
        start_epoch, step = int(checkpoint["epoch"]), int(checkpoint["step"])
        best = checkpoint.get("best_test_acc")
        history.append({"test_acc": checkpoint.get("test_acc")})
    train_loader = DeviceLoader(
        data.train_images, data.train_labels, config.batch_size, device, train=True,
        seed=config.seed, channels_last=config.channels_last,
    )  # fmt: skip
    test_loader = DeviceLoader(
        data.test_images, data.test_labels, config.eval_batch_size, device, train=False,
        channels_last=config.channels_last,
    )  # fmt: skip
    forward = torch.compile(model, mode=config.compile_mode) if config.compile else model
    mark_step = _step_marker(config)
    if _holder is not None:
        _holder["model"] = model
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    writer = (
        runs.RunWriter(run_dir, config, spec, data, resumed=checkpoint is not None)
        if run_dir
        else None
    )
    started = time.perf_counter()

    def emit(event: dict) -> dict:
        if writer is not None:
            writer.handle(event)
        return event

    epoch = start_epoch
    final = history[-1]["test_acc"] if history else None
    try:
        yield emit(
            {
                "event": "start",
                "config": config.to_dict(),
                "spec": spec.to_dict(),
                "model": config.label(),
                "device": device_name(device),
                "device_type": device.type,
                "total_steps": total_steps,
                "steps_per_epoch": steps_per_epoch,
                "epochs": config.epochs,
                "start_epoch": start_epoch,
                "dataset": data.source,
                "synthetic": data.synthetic,
                "num_train": len(data.train_labels),
                "num_test": len(data.test_labels),
                "classes": list(data.classes),
                "pid": os.getpid(),
                "run_dir": str(run_dir) if run_dir else None,
                "torch": str(torch.__version__),
            }
        )
        window: deque[tuple[float, int]] = deque(maxlen=20)
        for epoch in range(start_epoch + 1, config.epochs + 1):
            model.train()
            train_loader.set_epoch(epoch)
            epoch_start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen = 0
            window.clear()
            window.append((epoch_start, 0))
            for images, labels in train_loader:
                if cancel is not None and cancel.is_set():
                    raise _Cancelled
                lr = config.lr * lr_multiplier(config.schedule, step, total_steps, config.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                mark_step()
                with _autocast(device, config.precision):
                    logits = forward(images)
                    loss = F.cross_entropy(
                        logits.float(), labels, label_smoothing=config.label_smoothing
                    )
                # read the outputs before backward: CUDA graphs may reuse their buffers
                correct += (logits.detach().argmax(1) == labels).sum()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                step += 1
                if config.grad_norm_every and step % config.grad_norm_every == 0:
                    scaler.unscale_(optimizer)
                    yield emit(_grad_norm_event(model, step, epoch))
                scaler.step(optimizer)
                scaler.update()
                detached = loss.detach()
                loss_sum += detached * len(labels)
                seen += len(labels)
                if step % config.log_every == 0 or step == total_steps:
                    value = float(detached)
                    if not math.isfinite(value):
                        raise FloatingPointError(f"loss became {value} at step {step}")
                    now = time.perf_counter()
                    window.append((now, seen))
                    rate = (window[-1][1] - window[0][1]) / max(window[-1][0] - window[0][0], 1e-9)
                    remaining = total_steps - step
                    yield emit(
                        {
                            "event": "step",
                            "step": step,
                            "epoch": epoch,
                            "loss": value,
                            "lr": lr,
                            "images_per_s": rate,
                            "elapsed": now - started,
                            "eta_s": remaining * config.batch_size / max(rate, 1e-9),
                        }
                    )
            train_seconds = time.perf_counter() - epoch_start
            train_loss, train_acc = float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1)
            test_loss = test_acc = None
            eval_start = time.perf_counter()
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                result = evaluate(forward, test_loader, config.precision, cancel, mark_step)
                if result is None:
                    raise _Cancelled
                test_loss, test_acc = result
                final = test_acc
            improved = test_acc is not None and (best is None or test_acc > best)
            best = test_acc if improved else best
            event = {
                "event": "epoch",
                "epoch": epoch,
                "step": step,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "best_test_acc": best,
                "seconds": train_seconds,
                "eval_seconds": time.perf_counter() - eval_start,
                "elapsed": time.perf_counter() - started,
            }
            history.append(event)
            if writer is not None:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                    "epoch": epoch,
                    "step": step,
                    "test_acc": test_acc,
                    "best_test_acc": best,
                }
                writer.save_checkpoints(state, improved)
            yield emit(event)
        model.eval()
        yield emit(
            {
                "event": "done",
                "best_test_acc": best,
                "final_test_acc": final,
                "seconds": time.perf_counter() - started,
                "epochs": config.epochs,
                "steps": step,
                "synthetic": data.synthetic,
            }
        )
    except _Cancelled:
        yield emit(
            {
                "event": "cancelled",
                "step": step,
                "epoch": epoch,
                "seconds": time.perf_counter() - started,
                "best_test_acc": best,
                "message": f"cancelled at step {step} (epoch {epoch}); last.pt holds the last finished epoch",
            }
        )
        return
    except GeneratorExit:  # the consumer stopped listening: record it as cancelled
        emit({"event": "cancelled", "step": step, "epoch": epoch,
              "seconds": time.perf_counter() - started, "best_test_acc": best,
              "message": "stopped by the caller"})  # fmt: skip
        raise
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - reported, then re-raised
        if isinstance(error, KeyboardInterrupt):
            emit({"event": "cancelled", "step": step, "epoch": epoch,
                  "seconds": time.perf_counter() - started, "best_test_acc": best,
                  "message": "interrupted (Ctrl-C)"})  # fmt: skip
            raise
        message = friendly_error(error, config)
        yield emit(
            {
                "event": "failed",
                "message": message,
                "error": type(error).__name__,
                "step": step,
                "epoch": epoch,
                "seconds": time.perf_counter() - started,
            }
        )
        raise TrainingFailed(message) from error
    finally:
        if writer is not None:
            writer.close()


class _Cancelled(Exception):
    """Internal: a cancel request was seen."""


def _grad_norm_event(model: nn.Module, step: int, epoch: int) -> dict:
    from .probes import grad_norm_rows

    return {"event": "grad_norms", "step": step, "epoch": epoch, "rows": grad_norm_rows(model)}


def fit(
    config: TrainConfig | dict,
    on_event: Callable[[dict], Any] | None = None,
    cancel: Any = None,
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
) -> FitResult:
    """Train a network and report progress through events.

    Events are dicts with an "event" key:
      - start: config, spec, model, device, device_type, total_steps, steps_per_epoch,
        epochs, start_epoch, dataset, synthetic, num_train, num_test, classes, pid, run_dir
      - step: step, epoch, loss, lr, images_per_s, elapsed, eta_s
      - grad_norms: step, epoch, rows (index, layer, kind, grad_norm, weight_norm)
      - epoch: epoch, step, train_loss, train_acc, test_loss, test_acc, best_test_acc,
        seconds, eval_seconds, elapsed (accuracies are fractions; test_* None when the
        epoch was not evaluated)
      - done: best_test_acc, final_test_acc, seconds, epochs, steps, synthetic
      - cancelled: step, epoch, seconds, best_test_acc, message
      - failed: message, error, step, epoch, seconds

    Args:
        config: a TrainConfig or its dict.
        on_event: called with every event, in the training thread.
        cancel: anything with is_set() (e.g. threading.Event); checked before every step.
        run_dir: record the run there (spec.json, config.json, metrics.jsonl, status.json,
            last.pt, best.pt); None records nothing.
        resume: a run dir whose last.pt to continue from (also recorded there unless
            run_dir is given).

    Returns:
        FitResult with state "done" or "cancelled".

    Raises:
        ConfigError, DatasetNotFound, RunError: before training starts.
        TrainingFailed: training broke after it started (a "failed" event came first).
    """
    state = "done"
    history: list[dict] = []
    done: dict = {}
    holder: dict = {}
    for event in iter_fit(config, cancel=cancel, run_dir=run_dir, resume=resume, _holder=holder):
        kind = event["event"]
        if kind == "epoch":
            history.append(event)
        elif kind == "done":
            done = event
        elif kind == "cancelled":
            state, done = "cancelled", event
        if on_event is not None:
            on_event(event)
    result_model = holder.get("model")
    tested = [e["test_acc"] for e in history if e["test_acc"] is not None]
    return FitResult(
        state=state,
        best_test_acc=done.get("best_test_acc", max(tested) if tested else None),
        final_test_acc=done.get("final_test_acc", tested[-1] if tested else None),
        seconds=float(done.get("seconds", 0.0)),
        epochs=history[-1]["epoch"] if history else 0,
        steps=int(done.get("steps", done.get("step", 0))),
        run_dir=str(run_dir or resume) if (run_dir or resume) else None,
        model=result_model,
        history=history,
    )
