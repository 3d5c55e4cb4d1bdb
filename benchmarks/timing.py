"""What the small timing benchmarks share: repeat a call after a warm-up, print the median
and worst against a goal, and write the same figures as JSON with the machine and versions."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` calls to warm up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def report(
    results: list[tuple[str, list[float]]], goal_s: float, out: str | None, width: int
) -> None:
    """The table (what, median, worst, goal, ok) on stdout; with `out`, the JSON record."""
    machine = f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# {machine}, {time.strftime('%Y-%m-%d')}")
    print(f"{'what':{width}s} {'median s':>9s} {'max s':>7s} {'goal':>5s}  ok")
    for what, times in results:
        median, worst = statistics.median(times), max(times)
        ok = "yes" if worst <= goal_s else "no"
        print(f"{what:{width}s} {median:9.2f} {worst:7.2f} {goal_s:5.1f}  {ok}")
    if out:
        record = {
            "machine": machine,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "rows": [{"what": w, "seconds": t} for w, t in results],
        }
        Path(out).write_text(json.dumps(record, indent=1) + "\n")
