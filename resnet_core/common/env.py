"""Where the app reads data and writes runs, from the environment or the defaults."""

from __future__ import annotations

import os
from pathlib import Path

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
