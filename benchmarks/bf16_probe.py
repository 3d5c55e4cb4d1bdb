"""Does precision "auto" choose right on this CPU? Its probe against what it stands for.

For each workload, bf16 autocast's speed over fp32's (fp32 time / bf16 time), both timed in
turn (`resnet_core.training.parts.best_in_turn`, best of `--rounds`), on one thread and on
all: the probe "auto" runs (`cpu_bf16_speedup`: the three CIFAR stages in small, always on
one thread), the one layer it used to run, single conv + BatchNorm + ReLU layers at each
stage's width, and a real `Trainer.train_step` of each net. A probe is right where it lands on the same side of the 1.15 threshold as the steps.

    python benchmarks/bf16_probe.py --out benchmarks/results/DIR/bf16_probe.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from speedrun import environment  # noqa: E402
from torch import nn  # noqa: E402

from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training.parts import (  # noqa: E402
    CPU_BF16_MIN_SPEEDUP,
    best_in_turn,
    cpu_bf16_speedup,
    timed_pass,
)
from resnet_core.training.trainer import Trainer  # noqa: E402


def layer(channels: int, side: int, batch: int) -> Callable[[str], float]:
    """One conv + BatchNorm + ReLU forward and backward, timed in a precision."""
    block = nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
    ).to(memory_format=torch.channels_last)
    return timed_pass(
        block, torch.randn(batch, channels, side, side).to(memory_format=torch.channels_last)
    )


def step(net: str, batch: int) -> Callable[[str], float]:
    """One `Trainer.train_step` of `net` (synthetic batch), timed in a precision."""
    trainers = {
        precision: Trainer({"model": net, "dataset": "synthetic", "subset": 4 * batch,
                            "batch_size": batch, "device": "cpu", "precision": precision}).setup()
        for precision in ("fp32", "bf16")
    }  # fmt: skip
    images = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))

    def once(precision: str) -> float:
        started = time.perf_counter()
        float(trainers[precision].train_step(images, labels)[0])
        return time.perf_counter() - started

    return once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="resnet20,resnet56")
    parser.add_argument("--batch-size", type=int, default=128, help="images per training step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    most = torch.get_num_threads()
    cpu_bf16_speedup.cache_clear()  # it runs on one thread whatever the setting
    rows = [
        {"workload": "the probe of precision auto", "threads": 1, "speedup": cpu_bf16_speedup()}
    ]
    for threads in sorted({1, most}):
        torch.set_num_threads(threads)
        work = {"layer 32 ch, 32x32, batch 32 (the earlier probe)": layer(32, 32, 32)}
        work |= {f"layer {c} ch, {s}x{s}, batch 32": layer(c, s, 32) for c, s in ((16, 32), (32, 16), (64, 8))}  # fmt: skip
        work |= {f"{net} train_step, batch {args.batch_size}": step(net, args.batch_size)
                 for net in args.nets.split(",")}  # fmt: skip
        for name, once in work.items():
            best = best_in_turn(once, ("fp32", "bf16"), args.rounds)
            rows.append({"workload": name, "threads": threads, "speedup": best["fp32"] / best["bf16"],
                         "fp32_ms": 1000 * best["fp32"], "bf16_ms": 1000 * best["bf16"]})  # fmt: skip
    torch.set_num_threads(most)
    print(f"bf16 speed over fp32 (auto takes bf16 at {CPU_BF16_MIN_SPEEDUP}x or more)")
    print("| workload | threads | fp32 ms | bf16 ms | bf16 speedup |\n|---|---:|---:|---:|---:|")
    for row in rows:
        times = f"{row['fp32_ms']:.1f} | {row['bf16_ms']:.1f}" if "fp32_ms" in row else "- | -"
        print(f"| {row['workload']} | {row['threads']} | {times} | {row['speedup']:.2f}x |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, {"rows": rows, **environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
