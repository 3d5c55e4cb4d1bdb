"""Which device a run uses, how it is named in tables, and the job queue's key for it."""

from __future__ import annotations

import os

import torch

from resnet_core.common.errors import ConfigError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" -> cuda, then mps, then cpu; an unavailable device raises ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: {name!r} is not available (no CUDA GPU visible to torch "
                f"{torch.__version__}); use --device cpu or --device auto"
            )
        count = torch.cuda.device_count()
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            raise ConfigError(
                f"device: {name!r} does not exist; this machine has "
                f"{count} GPU(s): use cuda:0 .. cuda:{count - 1}"
            )
    if name == "mps" and not _mps_available():
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


def data_parallel_name(device: torch.device, processes: int) -> str:
    """What a data-parallel run trains on, as the machine numbers its GPUs: each rank sees
    the GPUs it was given (CUDA_VISIBLE_DEVICES) renumbered from 0, so 'cuda:0' alone would
    name the wrong one. E.g. 'cuda:2, cuda:3 (NVIDIA H200)' or 'cpu (1 threads), 2
    processes'."""
    if device.type != "cuda":
        return f"{device_name(device)}, {processes} processes"
    name = torch.cuda.get_device_name(device)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [part.strip() for part in visible.split(",")] if visible else None
    if ids is None:
        ids = [str(index) for index in range(processes)]
    if len(ids) != processes or not all(part.isdigit() for part in ids):
        return f"{processes} GPUs ({name})"  # several nodes, or GPUs named by UUID
    return f"{', '.join(f'cuda:{part}' for part in ids)} ({name})"


def machine_summary() -> str:
    """The best device of this machine in a few words: 'GPU: <name>', 'GPU: Apple MPS' or
    'CPU only' (the app's sidebar)."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return "GPU: Apple MPS" if _mps_available() else "CPU only"


def queue_key(requested: str | None) -> str:
    """The job queue's key for a config's device: 'auto' as training would pick it (cuda,
    mps, cpu). 'cuda' means any GPU (the queue places the job on a free one when it starts);
    'cuda:3' means that GPU only."""
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        requested = resolve_device("auto").type
    return requested


def cuda_devices() -> list[str]:
    """Every GPU torch sees, as device names: ['cuda:0', 'cuda:1', ...]; [] without CUDA."""
    if not torch.cuda.is_available():
        return []
    return [f"cuda:{index}" for index in range(torch.cuda.device_count())]


MEMORY_SHARE = 0.5  # of the machine's memory a single request may ask for


def memory_budget(device: torch.device | str = "cpu") -> int:
    """Bytes one request may use on `device`: half of the GPU's memory, or of the RAM."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else 0
        return int(torch.cuda.get_device_properties(index).total_memory * MEMORY_SHARE)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small laptop
        total = 8 << 30
    return int(total * MEMORY_SHARE)
