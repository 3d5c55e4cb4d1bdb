"""Training throughput of ResNet-20: the seed notebooks' pipeline against ours, same machine.

Notebook pipeline: torchvision ImageFolder (or CIFAR10) + PIL transforms RandomCrop(32, 4),
RandomHorizontalFlip, ToTensor, Normalize + DataLoader(batch 128, shuffle, num_workers=2),
fp32 SGD step. Ours: `resnet_core.training.trainer.Trainer.train_step` (uint8 dataset
resident on the device, batched crop/flip there, no workers) in a few settings.

Every pipeline runs in a fresh Python process, one after the other, so none inherits
another's warm caches or allocator state; with --repeats N the whole list is run N times,
interleaved, and the table shows the median (and the range). Images/s are timed over
--steps steps after --warmup untimed ones; "startup" is the time from the call to the first
step (torch.compile pays there).

    python benchmarks/train_throughput.py --data-dir DIR               # ~2 min on 2 cores
    python benchmarks/train_throughput.py --data-dir DIR --repeats 3   # steadier, ~6 min

Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from resnet_core import build_model  # noqa: E402
from resnet_core.common.cifar import CIFAR10_MEAN, CIFAR10_STD  # noqa: E402
from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training import trainer as trainer_module  # noqa: E402
from resnet_core.training.config import TrainConfig  # noqa: E402
from resnet_core.training.data import default_data_dir  # noqa: E402
from resnet_core.training.trainer import Trainer  # noqa: E402

NOTEBOOK = "notebook (ImageFolder + PIL + DataLoader x2, fp32)"
# name -> (TrainConfig overrides, keep freed memory); None marks the notebook pipeline.
# Hand-aligned, one pipeline a line: the table reads as the benchmark's list of settings.
PIPELINES: dict[str, tuple[dict, bool] | None] = {
    NOTEBOOK: None,
    "ours fp32": (dict(precision="fp32", channels_last=False), True),
    "ours bf16": (dict(precision="bf16", channels_last=False), True),
    "ours bf16 + channels_last, glibc default malloc": (dict(precision="bf16", channels_last=True), False),
    "ours bf16 + channels_last": (dict(precision="bf16", channels_last=True), True),
    "ours fp32 + channels_last": (dict(precision="fp32", channels_last=True), True),
    "ours auto precision + channels_last (default)": (dict(precision="auto", channels_last=True), True),
    "ours bf16 + channels_last + compile": (dict(precision="bf16", channels_last=True, compile=True), True),
    "ours bf16 + channels_last + compile max-autotune": (dict(precision="bf16", channels_last=True, compile=True, compile_mode="max-autotune-no-cudagraphs"), True),
    "ours fp32 + channels_last + compile": (dict(precision="fp32", channels_last=True, compile=True), True),
    "ours fp32 + channels_last + compile max-autotune": (dict(precision="fp32", channels_last=True, compile=True, compile_mode="max-autotune-no-cudagraphs"), True),
}  # fmt: skip


def notebook_pipeline(data_dir: Path, steps: int, warmup: int, batch_size: int) -> dict:
    """The seed notebooks' loop: PIL transforms in 2 worker processes, fp32."""
    from torchvision import datasets, transforms  # imported here: only this pipeline needs it

    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    if (data_dir / "cifar-10-batches-py").is_dir():
        dataset = datasets.CIFAR10(str(data_dir), train=True, transform=transform)
    else:
        dataset = datasets.ImageFolder(str(data_dir / "train"), transform=transform)
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2)
    model = build_model("resnet20")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    started = time.perf_counter()
    first = timed_from = None
    for index, (images, labels) in enumerate(loader):
        if index == 0:
            first = time.perf_counter() - started
        if index == warmup:
            timed_from = time.perf_counter()
        if index == warmup + steps:
            break
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - timed_from
    return {"images_per_s": steps * batch_size / seconds, "startup_s": first}


def ours(data_dir: Path, steps: int, warmup: int, batch_size: int, overrides: dict) -> dict:
    """Our `Trainer.train_step`, timed between steps `warmup` and `warmup + steps`."""
    config = TrainConfig(
        model="resnet20",
        data_dir=str(data_dir),
        batch_size=batch_size,
        subset=batch_size * (warmup + steps + 1),
        epochs=1,
        device="cpu",
        **overrides,
    )
    started = time.perf_counter()
    trainer = Trainer(config).setup()
    trainer.state.model.train()
    marks: dict[int, float] = {}
    for images, labels in trainer.state.train_loader:
        loss, _ = trainer.train_step(images, labels)
        float(loss)  # wait for the step, as a logged step does
        marks[trainer.step] = time.perf_counter()
        if trainer.step == warmup + steps:
            break
    seconds = marks[warmup + steps] - marks[warmup]
    return {"images_per_s": steps * batch_size / seconds, "startup_s": marks[1] - started}


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Measure one pipeline in this process (the child side of `measure`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir)
    pipeline = PIPELINES[name]
    if pipeline is None:
        return notebook_pipeline(data_dir, args.steps, args.warmup, args.batch_size)
    overrides, keep_memory = pipeline
    if not keep_memory:  # Trainer.setup would otherwise switch it on for CPU runs
        trainer_module.keep_freed_memory = lambda: False
    return ours(data_dir, args.steps, args.warmup, args.batch_size, overrides)


def measure(name: str, args: argparse.Namespace) -> dict:
    """Run one pipeline in a fresh Python process; returns its JSON result."""
    options = {
        "--data-dir": args.data_dir,
        "--steps": args.steps,
        "--warmup": args.warmup,
        "--batch-size": args.batch_size,
        "--threads": args.threads,
    }
    command = [sys.executable, __file__, "--one", name]
    for option, value in options.items():
        command += [option, str(value)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{name}: failed ({tail})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def versions() -> dict:
    import PIL  # imported here: only the notebook pipeline uses them
    import torchvision

    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "pillow": PIL.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default $RESNET_EXPLORER_DATA or ./data")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per pipeline")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of the whole list (median shown)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads in the training process (0 = torch default); "
        "1 is far more robust on a CPU shared with other jobs",
    )
    parser.add_argument(
        "--pipelines",
        nargs="*",
        default=None,
        help=f"subset of: {'; '.join(PIPELINES)} (default all; the notebook always runs)",
    )
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process mode
    return parser


def _summary_rows(chosen: list[str], samples: dict[str, list[dict]]) -> list[dict]:
    """Median images/s (and range) and startup of each pipeline, with the ratio to the first."""
    rows = []
    for name in chosen:
        rates = [s["images_per_s"] for s in samples[name]]
        rows.append(
            {
                "pipeline": name,
                "images_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "startup_s": statistics.median(s["startup_s"] for s in samples[name]),
            }
        )
    base = rows[0]["images_per_s"]
    for row in rows:
        row["ratio"] = row["images_per_s"] / base
    return rows


ISA_SETTINGS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")  # instruction-set limits, if set


def _args_record(args: argparse.Namespace) -> dict[str, str]:
    """The flags as text, paths by their last part only (no machine paths in results), and
    the instruction-set limits the run had in its environment."""
    record = {k: str(v) for k, v in vars(args).items()}
    for key in ("data_dir", "out"):
        if getattr(args, key):
            record[key] = Path(getattr(args, key)).name
    record.update({name: os.environ[name] for name in ISA_SETTINGS if name in os.environ})
    return record


def _print_table(info: dict, rows: list[dict]) -> None:
    width = max(len(row["pipeline"]) for row in rows)
    print()
    print(
        f"date {info['date']}, torch {info['torch']}, torchvision {info['torchvision']}, "
        f"Pillow {info['pillow']}, cpu {info['cpu']} ({info['cores']} cores), "
        f"load {info['load_average'][0]:.2f} before / {info['load_average_after'][0]:.2f} after"
    )
    print(f"| {'pipeline'.ljust(width)} | images/s | range     | ratio | startup s |")
    print(f"|{'-' * (width + 2)}|---------:|----------:|------:|----------:|")
    for row in rows:
        spread = f"{row['min']:.0f}-{row['max']:.0f}"
        print(
            f"| {row['pipeline'].ljust(width)} | {row['images_per_s']:8.0f} | {spread:>9} | "
            f"{row['ratio']:4.2f}x | {row['startup_s']:9.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()

    if args.one is not None:
        print(json.dumps(run_one(args.one, args)))
        return 0

    chosen = [NOTEBOOK] + [name for name in (args.pipelines or PIPELINES) if name != NOTEBOOK]
    unknown = [name for name in chosen if name not in PIPELINES]
    if unknown:
        parser.error(f"unknown pipeline(s): {unknown}; choose from {list(PIPELINES)}")
    info = versions()
    print(
        f"ResNet-20 training throughput, batch {args.batch_size}, {args.steps} timed steps "
        f"after {args.warmup} warm-up, {args.repeats} repeat(s), one process each",
        flush=True,
    )
    samples: dict[str, list[dict]] = {name: [] for name in chosen}
    for repeat in range(args.repeats):
        for name in chosen:
            result = measure(name, args)
            samples[name].append(result)
            print(
                f"  [{repeat + 1}/{args.repeats}] {name}: {result['images_per_s']:.0f} img/s",
                flush=True,
            )
    rows = _summary_rows(chosen, samples)
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    _print_table(info, rows)
    if args.out:
        write_json_atomic(
            Path(args.out), {**info, "args": _args_record(args), "rows": rows, "samples": samples}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
