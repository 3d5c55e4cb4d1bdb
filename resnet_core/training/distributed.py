"""Data-parallel training over the processes torchrun starts (PyTorch DDP).

`torchrun --nproc_per_node N -m resnet_core train ...` starts N copies of the command, each
with RANK, WORLD_SIZE and LOCAL_RANK in its environment. Each copy (a rank):

- joins the process group (`join`): nccl on CUDA, gloo on the CPU; on CUDA rank r trains on
  `cuda:LOCAL_RANK`;
- builds the same model from the same seed, wrapped in `DistributedDataParallel`, which
  averages the gradients over the ranks after every backward pass;
- reads its share of every global batch (`DeviceLoader(shard=(rank, world_size))`): the
  batch size of the config is the global batch, split evenly, so the same images are seen
  in the same steps as by one process with that batch;
- keeps its own BatchNorm statistics (no SyncBatchNorm): each rank normalises with the
  mean and variance of its own share, as torchvision's reference recipe does by default.
  Results therefore match one process closely but not exactly.

Rank 0 alone records the run (config, metrics, checkpoints, status) and evaluates the test
set; the others write nothing and receive its test numbers. A rank that dies breaks the
next collective call of the others; torchrun then stops them with SIGTERM, which `join`
turns into `RankStopped`, so rank 0 records the run as failed; last.pt keeps the last
finished epoch.

See https://pytorch.org/docs/stable/distributed.html and Goyal et al. 2017,
https://arxiv.org/abs/1706.02677 (large minibatches over many GPUs).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from resnet_core.common.errors import ConfigError

__all__ = [
    "Ranks",
    "RankStopped",
    "SharedCancel",
    "ranks_from_env",
    "enter",
    "join",
    "leave",
    "lost_rank_message",
    "local_batch",
    "broadcast_floats",
    "sum_floats",
    "wrap",
    "evaluate_on_rank_0",
    "torchrun_command",
]

TIMEOUT_ENV = "RESNET_EXPLORER_DDP_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600  # a collective call that waits longer than this fails the run


class RankStopped(RuntimeError):
    """This rank was told to stop (SIGTERM from torchrun): another rank of the run failed."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        """True for rank 0, the one that records the run."""
        return self.rank == 0


def ranks_from_env(environ: Mapping[str, str] | None = None) -> Ranks | None:
    """The Ranks torchrun set in the environment; None for a single process."""
    environ = os.environ if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE") or 1)
    if world_size < 2:
        return None
    rank = int(environ["RANK"])
    return Ranks(rank, world_size, int(environ.get("LOCAL_RANK") or rank))


def local_batch(batch_size: int, ranks: Ranks) -> int:
    """Each rank's share of the global batch; ConfigError if it does not split evenly."""
    if batch_size % ranks.world_size:
        raise ConfigError(
            f"batch_size: {batch_size} is the global batch and must split evenly over "
            f"{ranks.world_size} processes; use a multiple of {ranks.world_size}"
        )
    return batch_size // ranks.world_size


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise RankStopped(
        "another process of this data-parallel run stopped, so torchrun ended this one"
    )


def join(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group; returns the device this rank trains on.

    `device` is the resolved device of the config: on CUDA this rank takes
    `cuda:LOCAL_RANK` and nccl, on the CPU it stays there with gloo.
    """
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"device: data-parallel training needs cuda or cpu, not {device.type}")
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))
        dist.init_process_group(
            backend, rank=ranks.rank, world_size=ranks.world_size, timeout=timeout
        )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return device


def enter(
    ranks: Ranks, batch_size: int, device: torch.device, cancel: Any, every: int
) -> tuple[torch.device, SharedCancel]:
    """Take this rank's place in the run before anything is built: refuse a global batch
    that does not split, join the process group, and share the cancel flag (asked every
    `every` steps). Returns the device this rank trains on and the shared flag."""
    local_batch(batch_size, ranks)
    device = join(ranks, device)
    return device, SharedCancel(cancel, device, every)


def wrap(model: nn.Module, ranks: Ranks | None, device: torch.device) -> nn.Module:
    """The model, wrapped in DistributedDataParallel on a data-parallel rank; with `ranks`
    None (one process), the model itself."""
    if ranks is None:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def evaluate_on_rank_0(
    ranks: Ranks, device: torch.device, evaluate: Callable[[], tuple[float, float]]
) -> tuple[float, float]:
    """Rank 0 runs `evaluate` (on the weights it saves) and hands the result to the others,
    so every rank reports, and decides on, the same test numbers."""
    result = evaluate() if ranks.main else (0.0, 0.0)
    loss, accuracy = broadcast_floats(result, device)
    return loss, accuracy


def leave(together: bool) -> None:
    """Leave the process group (after the run, however it ended). `together`: every rank got
    to the end, so wait for all of them first; tearing gloo down while a peer still talks can
    abort the process ("terminate called without an active exception")."""
    if not dist.is_initialized():
        return
    if together:
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - a peer is gone: there is nothing left to wait for
            pass
    dist.destroy_process_group()


# What a collective call says when a peer process has gone (gloo, nccl, the c10d store).
_LOST_PEER_MARKS = ("Connection reset", "Connection closed", "gloo", "NCCL", "Broken pipe")


def lost_rank_message(error: BaseException, message: str) -> str:
    """The failure message of a rank, saying so when another rank's loss caused it."""
    lost = isinstance(error, RankStopped) or any(mark in str(error) for mark in _LOST_PEER_MARKS)
    if not lost:
        return message
    return (
        "another process of this data-parallel run stopped; last.pt holds the last finished "
        f"epoch ({message})"
    )


def broadcast_floats(values: Sequence[float], device: torch.device) -> list[float]:
    """Rank 0's `values` on every rank (the others pass placeholders of the same length)."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def sum_floats(values: Sequence[float], device: torch.device) -> list[float]:
    """Each of `values` summed over the ranks."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


class SharedCancel:
    """A cancel flag every rank agrees on: asked every `every` steps, set on all ranks
    when any rank's own flag is set (one small all-reduce per check)."""

    def __init__(self, cancel: Any, device: torch.device, every: int) -> None:
        self.cancel, self.device, self.every = cancel, device, max(every, 1)
        self.calls, self.decided = 0, False
        self.message = ""

    def is_set(self) -> bool:
        self.calls += 1
        if self.decided or self.calls % self.every:
            return self.decided
        own = self.cancel is not None and self.cancel.is_set()
        self.decided = sum_floats([float(own)], self.device)[0] > 0
        if self.decided and self.cancel is not None:
            self.message = getattr(self.cancel, "message", "")
        return self.decided


def torchrun_command(processes: int, args: Sequence[str], port: int | None = None) -> list[str]:
    """The command that runs `python <args>` as `processes` data-parallel ranks on this
    machine (`--standalone` picks a free port unless `port` is given)."""
    where = ["--standalone"] if port is None else ["--master-port", str(port)]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
        "--nproc_per_node",
        str(processes),
        *args,
    ]
