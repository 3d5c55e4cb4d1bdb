"""How many CPU threads a training step should use, measured while it trains.

On a quiet machine a step on all cores is fastest (ResNet-56 on 2 cores: 1.8x one thread).
On a busy one, with other processes wanting the same cores, threads that wait for each other
at every operator lose their turns, and one thread is faster (two spinning processes on 2
cores: 128 images/s with 1 thread against 99 with 2). Which holds changes while a class
shares the machine, so a `ThreadTuner` keeps measuring: every so often it trains a few
batches with the other thread count, compares their median time per batch with the batches
just before, and keeps whichever was faster. A trial that confirms the current count doubles
the wait before the next one, and a trial whose first batch is already twice as slow (or
fast) ends there, so on a steady machine trials soon cost little. On a machine whose cores
are already busy when training starts (`others_busy`), training begins on one thread: there a
batch on every thread can take ten times as long, and the first trial would come too late.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from resnet_core.common.files import read_regular_text

__all__ = ["ThreadTuner", "others_busy"]

FIRST_TRIAL = 4  # batches before the first trial (the first ones allocate and warm up)
PERIOD = 30  # batches between trials, doubled by every trial that keeps the count
MAX_PERIOD = 240
TRIAL = 3  # batches of a trial; their median is compared with as many before it
BETTER = 1.1  # the other count must be this much faster to be kept
CLEAR = 2.0  # a trial batch this much slower or faster decides the trial at once
BUSY = 0.5  # others keeping this share of the cores busy at the start: begin on one thread


class ThreadTuner:
    """Switch between all threads and one, whichever trains faster now.

    Call `tick()` after every batch (it returns a sentence when the count changed) and
    `restart()` before the first batch of an epoch, so that evaluation between epochs is not
    counted as a batch. `clock` and `set_threads` are there for tests.
    """

    def __init__(
        self,
        most: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        busy: float | None = None,
    ) -> None:
        """`busy`: how many cores other processes kept busy just before training (see
        `others_busy`); at least half of them and training begins on one thread."""
        self.current = self.first = most or torch.get_num_threads()
        self.other = 1 if self.current > 1 else self.current
        self.clock, self.set_threads = clock, set_threads
        self.said: str | None = None  # for the first tick to return
        self.starting = True  # the first restart sets `current` (not before: on a GPU, never)
        if self.active and busy is not None and busy >= BUSY * self.first:
            self.current, self.other = 1, self.first
            self.said = (
                f"training on 1 thread to begin with: other processes kept {busy:.1f} of the "
                f"{self.first} cores busy"
            )
        self.kept = {self.current}  # the counts training has settled on so far
        self.settled: list[float] = []  # seconds per batch at `current` since the last trial
        self.trial: list[float] = []  # seconds per batch at `other`, during a trial
        self.trying = False
        self.period = PERIOD
        self.due = FIRST_TRIAL
        self.last: float | None = None

    @property
    def active(self) -> bool:
        return self.current != self.other

    def close(self) -> None:
        """Training ended: back to the thread count it started with."""
        if (self.other if self.trying else self.current) != self.first:
            self.set_threads(self.first)

    def restart(self) -> None:
        """The next tick only starts the clock."""
        self.last = None
        if self.starting and self.current != self.first:
            self.set_threads(self.current)
        self.starting = False

    def tick(self) -> str | None:
        """A batch ended: record its time; start or end a trial when due."""
        now, last = self.clock(), self.last
        self.last = now
        if last is None or not self.active:
            said, self.said = self.said, None
            return said
        if self.trying:
            self.trial.append(now - last)
            ratio = self.trial[0] / statistics.median(self.settled[-TRIAL:])
            clear = len(self.trial) == 1 and not 1 / CLEAR < ratio < CLEAR
            return self._decide() if clear or len(self.trial) == TRIAL else None
        self.settled.append(now - last)
        if len(self.settled) >= self.due:
            self.trying = True
            self.set_threads(self.other)
        return None

    def _decide(self) -> str | None:
        before = statistics.median(self.settled[-TRIAL:])
        during = statistics.median(self.trial)
        self.trying, self.trial, self.settled = False, [], []
        if before > BETTER * during:
            tried, kept = self.current, self.other
            self.current, self.other = kept, tried
            self.period, self.due = PERIOD, PERIOD
            again = " again" if kept in self.kept else ""
            self.kept.add(kept)
            return (
                f"training on {_threads(kept)}: {during:.2f} s a batch, against {before:.2f} s "
                f"on {_threads(tried)} (other work shares the cores)"
                if kept < tried
                else f"training on {_threads(kept)}{again}: {during:.2f} s a batch, against "
                f"{before:.2f} s on {_threads(tried)}"
            )
        self.set_threads(self.current)
        self.period = min(2 * self.period, MAX_PERIOD)
        self.due = self.period
        return None


def _threads(count: int) -> str:
    return "1 thread" if count == 1 else f"{count} threads"


def others_busy(window: float = 0.25, stat: Path = Path("/proc/stat")) -> float | None:
    """How many cores other processes kept busy over the next `window` seconds (this process's
    own CPU time taken out); None where the kernel does not say (not Linux)."""

    def busy_seconds() -> tuple[float, float]:
        fields = [int(v) for v in read_regular_text(stat, 2**20).split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        own = os.times()
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system

    try:
        (busy0, own0), start = busy_seconds(), time.perf_counter()
        time.sleep(window)
        (busy1, own1), wall = busy_seconds(), time.perf_counter() - start
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
