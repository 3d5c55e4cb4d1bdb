"""Where a CPU training step of ResNet-20 goes, and the speed it could reach at most if
everything but the convolutions cost nothing.

Profiles `Trainer.train_step` (our loop, synthetic images, the given precision and memory
format) with torch.profiler and sums the operators' own time into groups: convolutions
(forward and backward), BatchNorm, ReLU, residual adds and the rest (the optimizer among them). The
ceiling is the batch divided by the convolutions' time per step.

    python benchmarks/cpu_profile.py --out benchmarks/results/DIR/cpu_profile.json
    python benchmarks/cpu_profile.py --precision bf16 --steps 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from speedrun import environment  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training.config import TrainConfig  # noqa: E402
from resnet_core.training.trainer import Trainer  # noqa: E402

# (group, operator-name test), first match wins; "other" holds the optimizer, copies, fills
GROUPS = (
    ("convolution", lambda name: "convolution" in name),
    ("BatchNorm", lambda name: "batch_norm" in name),
    ("ReLU", lambda name: any(part in name for part in ("threshold", "relu", "clamp_min"))),
    ("residual add", lambda name: name == "aten::add"),
)


def group_of(name: str) -> str:
    return next((group for group, test in GROUPS if test(name)), "other")


def profile_steps(args: argparse.Namespace) -> dict[str, float]:
    """Milliseconds per step of each group, from `args.steps` profiled steps."""
    config = TrainConfig(
        model="resnet20",
        dataset="synthetic",
        subset=args.batch_size * (args.warmup + args.steps + 1),
        batch_size=args.batch_size,
        epochs=1,
        device="cpu",
        precision=args.precision,
        channels_last=True,
    )
    trainer = Trainer(config).setup()
    trainer.state.model.train()
    batches = iter(trainer.state.train_loader)
    for _ in range(args.warmup):
        trainer.train_step(*next(batches))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            float(trainer.train_step(*next(batches))[0])
    totals: dict[str, float] = {group: 0.0 for group, _ in GROUPS} | {"other": 0.0}
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            totals[group_of(event.key)] += event.self_cpu_time_total / 1000 / args.steps
    return totals


def table(totals: dict[str, float], batch_size: int) -> str:
    step = sum(totals.values())
    lines = ["| part of a step | ms | share |", "|---|---:|---:|"]
    lines += [f"| {g} | {ms:.1f} | {100 * ms / step:.0f} % |" for g, ms in totals.items()]
    lines.append(f"| **all operators** | **{step:.1f}** | 100 % |")
    ceiling = 1000 * batch_size / totals["convolution"]
    lines.append(
        f"\nAt {1000 * batch_size / step:,.0f} images/s of operator time; with only the "
        f"convolutions left: {ceiling:,.0f} images/s ({step / totals['convolution']:.2f}x)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=5, help="unprofiled steps first")
    parser.add_argument("--out", default=None, metavar="FILE.json")
    args = parser.parse_args(argv)
    totals = profile_steps(args)
    print(table(totals, args.batch_size))
    if args.out:
        record = {**environment(), "threads": torch.get_num_threads(), "ms_per_step": totals}
        write_json_atomic(args.out, {**record, "args": vars(args) | {"out": Path(args.out).name}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
