"""Where the app reads data and writes runs, from the environment or the defaults, and
what a results file records about the machine and software that made it."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from resnet_core.common.device import machine_summary

DATA_ENV = "RESNET_EXPLORER_DATA"
CHECKPOINTS_ENV = "RESNET_EXPLORER_CHECKPOINTS"
JOBS_PER_DEVICE_ENV = "RESNET_EXPLORER_JOBS_PER_DEVICE"


def default_data_dir() -> Path:
    """The data folder when none is given: $RESNET_EXPLORER_DATA, else ./data."""
    return Path(os.environ.get(DATA_ENV) or "data")


def checkpoints_root() -> Path:
    """The checkpoints folder: $RESNET_EXPLORER_CHECKPOINTS, else ./checkpoints."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or "checkpoints")


def runs_root() -> Path:
    """Where runs are recorded: the `runs/` folder of `checkpoints_root()`."""
    return checkpoints_root() / "runs"


def jobs_per_device() -> int:
    """Jobs the queue runs at once on one GPU: $RESNET_EXPLORER_JOBS_PER_DEVICE, else 1."""
    text = os.environ.get(JOBS_PER_DEVICE_ENV) or "1"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{JOBS_PER_DEVICE_ENV}={text!r}: must be a whole number >= 1")
    return value


def provenance(command: str, device: str | None = None) -> dict[str, Any]:
    """How a results file was made: the command, the machine, torch, Python and the date.

    Written beside the numbers so that a reader can tell which machine and versions they
    came from, and make them again. Keys: command, hardware (machine, cpu, cpu_count,
    torch_threads, platform; with `device`, also device and, on CUDA, gpu), torch, python,
    date. Every result the package writes (experiments, lesions, landscapes) uses this one.
    """
    hardware: dict[str, Any] = {
        "machine": machine_summary(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if device is not None:
        hardware["device"] = device
        if device.startswith("cuda") and torch.cuda.is_available():
            hardware["gpu"] = torch.cuda.get_device_name(0)
    return {
        "command": command,
        "hardware": hardware,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
