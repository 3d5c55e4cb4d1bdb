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
import math
import os
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

from resnet_core.common.device import device_name, resolve_device
from resnet_core.common.errors import ConfigError, failure_message, first_line
from resnet_core.common.modes import model_mode
from resnet_core.nets.model import build_model
from resnet_core.training.config import TrainConfig
from resnet_core.training.data import Cifar10, DeviceLoader, load_dataset

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


class TrainingFailed(RuntimeError):
    """Training stopped with an error after it started; the message says what to try."""


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


# Precision -------------------------------------------------------------------------------
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
    total_loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.int64)
    count = 0
    with model_mode(model, train=False):
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
    return float(total_loss) / max(count, 1), int(correct) / max(count, 1)


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
    from resnet_core.training import runs  # runs imports this module for TrainConfig

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
                f"{resume / 'last.pt'}: does not match this config's model ({first_line(error)})"
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
        message = failure_message(error, config.batch_size, config.lr)
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
    from resnet_core.analysis.probes import grad_norm_rows

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
