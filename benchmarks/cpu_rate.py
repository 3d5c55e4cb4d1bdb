"""How fast this machine multiplies and convolves in fp32, and what share of that rate a
training step of our ResNets reaches.

The machine's rates are measured with the same threads the step uses: a square fp32 GEMM and
3x3 convolutions (forward and both backward passes, channels_last, batch 128) at the CIFAR
ResNets' three stage shapes and at one wide layer; each is the best of three rounds' medians
(a shared virtual machine's speed wanders), so the share a step reaches errs low. A step's floating-point work is counted by
`torch.utils.flop_counter` on one real `Trainer.train_step` (forward, backward, both
convolution gradients; 2 FLOPs per multiply-add), and divided by the step's median wall time.

    python benchmarks/cpu_rate.py --nets resnet20,resnet56 --out benchmarks/results/DIR/cpu_rate.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from speedrun import environment  # noqa: E402
from timing import timed  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training.config import TrainConfig  # noqa: E402
from resnet_core.training.trainer import Trainer  # noqa: E402

# (name, channels, side): the three stages of a CIFAR ResNet, and a wide layer
CONV_SHAPES = (("16 ch, 32x32", 16, 32), ("32 ch, 16x16", 32, 16), ("64 ch, 8x8", 64, 8),
               ("128 ch, 16x16", 128, 16))  # fmt: skip


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(work, repeats, warmup=5))


def gemm_rate(size: int, repeats: int) -> float:
    """GFLOP/s of an fp32 size x size x size matrix product."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def conv_rate(channels: int, side: int, batch: int, repeats: int) -> float:
    """GFLOP/s of a 3x3 convolution's forward and both gradients (input and weight)."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    grad = torch.randn(batch, channels, side, side).to(memory_format=torch.channels_last)

    def step() -> None:
        conv(x).backward(grad)

    flops = 3 * 2 * batch * channels * channels * 9 * side * side
    return flops / median_seconds(step, repeats) / 1e9


def step_rate(model: str, batch: int, repeats: int) -> dict[str, float]:
    """A training step's GFLOP (counted) and GFLOP/s (over its median wall time)."""
    config = TrainConfig(model=model, dataset="synthetic", subset=batch * (repeats + 4),
                         batch_size=batch, epochs=1, device="cpu", channels_last=True)  # fmt: skip
    trainer = Trainer(config).setup()
    trainer.state.model.train()
    batches = iter(trainer.state.train_loader)
    images, labels = next(batches)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(images, labels)
    seconds = median_seconds(lambda: float(trainer.train_step(images, labels)[0]), repeats)
    gflop = counter.get_total_flops() / 1e9
    return {"gflop_per_step": gflop, "ms_per_step": 1000 * seconds, "gflops": gflop / seconds}


def machine_rates(args: argparse.Namespace) -> dict[str, float]:
    """The best of `args.rounds` medians for each: the rate this machine can reach."""
    rates: dict[str, float] = {}
    for _ in range(args.rounds):
        measured = {"gemm": gemm_rate(args.gemm_size, args.repeats)}
        for name, channels, side in CONV_SHAPES:
            measured[f"conv {name}"] = conv_rate(channels, side, args.batch_size, args.repeats)
        rates = {name: max(rate, rates.get(name, 0.0)) for name, rate in measured.items()}
    return rates


def measure(args: argparse.Namespace) -> dict:
    machine = machine_rates(args)
    nets = {net: step_rate(net, args.batch_size, args.repeats) for net in args.nets}
    return {"machine_gflops": machine, "steps": nets}


def table(result: dict) -> str:
    machine = result["machine_gflops"]
    conv = max(rate for name, rate in machine.items() if name.startswith("conv"))
    lines = ["| this machine, fp32 | GFLOP/s |", "|---|---:|"]
    lines += [f"| {name} | {rate:.1f} |" for name, rate in machine.items()]
    lines += ["", "| training step | GFLOP | ms | GFLOP/s | of the best conv rate |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for net, step in result["steps"].items():
        share = step["gflops"] / conv
        lines.append(f"| {net} | {step['gflop_per_step']:.2f} | {step['ms_per_step']:.0f} | "
                     f"{step['gflops']:.1f} | {100 * share:.0f} % |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="resnet20,resnet56", type=lambda s: s.split(","))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--gemm-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats of each")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the machine's rates")
    parser.add_argument("--out", default=None, metavar="FILE.json")
    args = parser.parse_args(argv)
    result = measure(args)
    print(table(result))
    if args.out:
        record = {**environment(), "threads": torch.get_num_threads(), **result}
        write_json_atomic(args.out, {**record, "args": vars(args) | {"out": Path(args.out).name}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
