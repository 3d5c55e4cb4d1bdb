"""The parts the trainer puts together: precision (autocast), the
learning-rate schedule, the optimizer, CPU memory reuse and test-set evaluation.

Recipe for short CPU runs: SGD with Nesterov momentum, a one-cycle learning rate (Smith &
Topin 2017, https://arxiv.org/abs/1708.07120), label smoothing (Szegedy et al. 2016,
https://arxiv.org/abs/1512.00567), bf16 autocast and a device-resident data loader
(`resnet_core.training.loader.DeviceLoader`, after cifar10-airbench).

The seed notebooks' recipes are settings of the same parts (`resnet_core.training.notebooks`):
MultiStepLR milestones (schedule "step" with `milestones` in epochs and `gamma`), a constant
rate (schedule "constant"), Adam at 1e-3 with no weight decay (optimizer "adam",
weight_decay 0: nothing here adds decay the config does not ask for), torchvision's
zero-padded crops and the widely copied normalisation constants.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.common.modes import model_mode
from resnet_core.training.config import TrainConfig
from resnet_core.training.data import NORMALIZATIONS, Cifar10
from resnet_core.training.loader import DeviceLoader

__all__ = [
    "auto_precision",
    "autocast",
    "best_in_turn",
    "cpu_bf16_speedup",
    "timed_pass",
    "keep_freed_memory",
    "lr_multiplier",
    "make_optimizer",
    "evaluate",
    "train_loader",
    "eval_loader",
]

CROP_PADDING = 4  # pixels, as torchvision's RandomCrop(32, padding=4)


# Precision -------------------------------------------------------------------------------
def autocast(device: torch.device, precision: str):
    """Autocast context for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


CPU_BF16_MIN_SPEEDUP = 1.15  # bf16 must beat fp32 by this much on the probe to be chosen


def auto_precision(device: torch.device) -> tuple[str, str]:
    """The precision "auto" stands for on `device`, and why, in words.

    GPUs: bf16 where the GPU computes in it natively (compute capability 8 and up), else fp16
    with a gradient scaler. Apple GPUs: fp32. CPUs: bf16 autocast is 1.7x fp32's speed on a
    CPU with AMX, 0.8x on one with AVX-512 alone and 0.1x on one with AVX2 alone
    (benchmarks/RESULTS.md), so a short probe decides.
    """
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if major >= 8:
            return "bf16", "this GPU computes in bf16"
        return "fp16", "this GPU has no native bf16 (fp16 with a gradient scaler)"
    if device.type != "cpu":
        return "fp32", f"no autocast on {device.type}"
    speedup = cpu_bf16_speedup()
    choice = "bf16" if speedup >= CPU_BF16_MIN_SPEEDUP else "fp32"
    return (
        choice,
        f"bf16 autocast ran a probe of three conv layers at {speedup:.2f}x fp32's speed here",
    )


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16-autocast time of a forward and backward through the three CIFAR
    stages in small (conv + BatchNorm + ReLU at 16, 32 and 64 channels, 32x32 down to 8x8,
    32 images), on one thread, best of 7 each taken in turn: under half a second in all.
    One layer alone misleads: on an AVX-512 bf16 CPU the one this probe used to be (32
    channels at 32x32) ran at 1.0x in bf16, a whole ResNet-56 step at 1.6x
    (benchmarks/bf16_probe.py). Measured once per process; leaves the global random state
    and the thread count as they were."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = []
        for before, after, stride in ((16, 16, 1), (16, 32, 2), (32, 64, 2)):
            layers += [nn.Conv2d(before, after, 3, stride, 1, bias=False), nn.BatchNorm2d(after)]
            layers.append(nn.ReLU())
        stages = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        images = torch.randn(32, 16, 32, 32).to(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a core computes, not how threads wait on a busy machine
    try:
        best = best_in_turn(timed_pass(stages, images), ("fp32", "bf16"))
    finally:
        torch.set_num_threads(threads)
    return best["fp32"] / best["bf16"]


def timed_pass(module: nn.Module, inputs: torch.Tensor) -> Callable[[str], float]:
    """A function that runs one forward (in a precision's autocast) and backward of `module`
    on the CPU and returns its seconds; the gradients are dropped after each."""
    cpu = torch.device("cpu")

    def once(precision: str) -> float:
        started = time.perf_counter()
        with autocast(cpu, precision):
            out = module(inputs)
        out.float().sum().backward()
        module.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    return once


def best_in_turn(once: Callable[[str], float], kinds: Sequence[str], rounds: int = 7) -> dict:
    """The best of `rounds` timings `once(kind)` of each kind, taken in turn (one of each per
    round, after one warm-up each), so that other work starting or stopping on a shared
    machine slows every kind alike instead of the ones timed last."""
    for kind in kinds:
        once(kind)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            times[kind].append(once(kind))
    return {kind: min(seconds) for kind, seconds in times.items()}


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
def lr_multiplier(
    schedule: str,
    step: int,
    total_steps: int,
    warmup: float,
    *,
    milestones: Sequence[int] | None = None,
    gamma: float = 0.1,
    steps_per_epoch: int = 1,
    warmup_factor: float = 0.0,
) -> float:
    """Learning-rate factor for `step` (0-based) out of `total_steps`.

    Every schedule starts with a warm-up over `warmup` of the steps (none when 0): linear
    from 0 when `warmup_factor` is 0, else constant at `warmup_factor` (He et al. 2016 train
    ResNet-110 at a tenth of the rate for about 400 iterations).
    "step" multiplies by `gamma` at each of `milestones`, in epochs of `steps_per_epoch`
    steps: milestone m takes effect from the first step of epoch m + 1, as torch's
    MultiStepLR stepped once per epoch; without milestones, at 50 % and 75 % of the steps.
    """
    total = max(total_steps, 1)
    warm = int(round(warmup * total))
    if step < warm:
        return warmup_factor or (step + 1) / warm  # a linear warm-up is never exactly 0
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        if milestones is None:
            return gamma ** ((step >= 0.5 * total) + (step >= 0.75 * total))
        epoch = step // max(steps_per_epoch, 1)  # epochs finished before this step
        return gamma ** sum(epoch >= milestone for milestone in milestones)
    progress = (step - warm) / max(total - warm, 1)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(1.0 - progress, 0.0)  # onecycle: linear decay to 0 after the peak


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
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


# Data ------------------------------------------------------------------------------------
def _normalization(config: TrainConfig) -> dict[str, tuple[float, ...]]:
    mean, std = NORMALIZATIONS[config.normalize]
    return {"mean": mean, "std": std}


def train_loader(
    config: TrainConfig, data: Cifar10, device: torch.device, shard: tuple[int, int] = (0, 1)
) -> DeviceLoader:
    """The shuffled training loader with the config's augmentation and normalisation;
    `shard` (rank, world_size) gives a data-parallel rank its part of each batch."""
    return DeviceLoader(
        data.train_images,
        data.train_labels,
        config.batch_size,
        device,
        train=True,
        seed=config.seed,
        crop_padding=CROP_PADDING if config.augment else 0,
        flip=config.augment,
        pad_mode=config.crop_pad,
        channels_last=config.channels_last,
        shard=shard,
        **_normalization(config),
    )


def eval_loader(config: TrainConfig, data: Cifar10, device: torch.device) -> DeviceLoader:
    """The test set in order, normalised as the config trains (a run is evaluated alike)."""
    return DeviceLoader(
        data.test_images,
        data.test_labels,
        config.eval_batch_size,
        device,
        train=False,
        channels_last=config.channels_last,
        **_normalization(config),
    )


# Evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    precision: str = "fp32",
    cancel: Any = None,
    mark_step: Callable[[], None] | None = None,
    tta: str = "none",
) -> tuple[float, float] | None:
    """Mean cross-entropy and accuracy (a fraction) over a loader, in eval mode.

    `mark_step` is called before each batch (a compiled model with CUDA graphs needs it).
    With `tta` "flip" the logits of each image and its mirror image are averaged.
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
            with autocast(loader.device, precision):
                logits = _logits(model, images, tta)
            total_loss += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
            count += len(labels)
    return float(total_loss) / max(count, 1), int(correct) / max(count, 1)


def _logits(model: nn.Module, images: torch.Tensor, tta: str) -> torch.Tensor:
    """The model's logits; with tta "flip", the mean over each image and its mirror image
    (one forward pass over both, as cifar10-airbench)."""
    if tta != "flip":
        return model(images)
    both = model(torch.cat([images, images.flip(-1)])).float()  # (2N, classes)
    plain, mirrored = both.chunk(2)
    return (plain + mirrored) / 2
