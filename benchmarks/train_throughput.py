"""Training throughput of ResNet-20: the seed notebooks' pipeline against ours, same machine.

Notebook pipeline: torchvision ImageFolder (or CIFAR10) + PIL transforms RandomCrop(32, 4),
RandomHorizontalFlip, ToTensor, Normalize + DataLoader(batch 128, shuffle, num_workers=2),
fp32 SGD step. Ours: `resnet_core.train.iter_fit` (uint8 dataset resident on the device,
batched crop/flip there, no workers) in a few settings. Images/s are timed over steps
after a warm-up; "startup" is the time from the call to the first step (torch.compile pays
there).

    python benchmarks/train_throughput.py --data-dir DIR            # ~2-3 min on 2 cores

Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from resnet_core import build_model  # noqa: E402
from resnet_core.data import CIFAR10_MEAN, CIFAR10_STD, default_data_dir  # noqa: E402
from resnet_core.train import TrainConfig, iter_fit  # noqa: E402

# name -> TrainConfig overrides for "ours"
VARIANTS = {
    "ours fp32": dict(precision="fp32", channels_last=False),
    "ours bf16": dict(precision="bf16", channels_last=False),
    "ours bf16 + channels_last (default)": dict(precision="bf16", channels_last=True),
    "ours bf16 + channels_last + compile": dict(precision="bf16", channels_last=True, compile=True),
}


def notebook_pipeline(data_dir: Path, steps: int, warmup: int, batch_size: int) -> dict:
    """The seed notebooks' loop: PIL transforms in 2 worker processes, fp32."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])  # fmt: skip
    if (data_dir / "cifar-10-batches-py").is_dir():
        dataset = datasets.CIFAR10(str(data_dir), train=True, transform=transform)
    else:
        dataset = datasets.ImageFolder(str(data_dir / "train"), transform=transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2)
    torch.manual_seed(0)
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
    """Our loop (iter_fit) timed between the step events `warmup` and `warmup + steps`."""
    config = TrainConfig(model="resnet20", data_dir=str(data_dir), batch_size=batch_size,
                         subset=batch_size * (warmup + steps + 1), epochs=1, device="cpu",
                         **overrides)  # fmt: skip
    started = time.perf_counter()
    marks: dict[int, float] = {}
    stream = iter_fit(config)
    for event in stream:
        if event["event"] == "step":
            marks[event["step"]] = time.perf_counter()
            if event["step"] == warmup + steps:
                stream.close()  # skip the end-of-epoch evaluation
                break
    seconds = marks[warmup + steps] - marks[warmup]
    return {"images_per_s": steps * batch_size / seconds, "startup_s": marks[1] - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default $RESNET_EXPLORER_DATA or ./data")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per pipeline")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads in the training process (0 = torch default); "
                        "1 is far more robust on a CPU shared with other jobs")  # fmt: skip
    parser.add_argument("--variants", nargs="*", default=None,
                        help=f"subset of: {'; '.join(VARIANTS)} (default all)")  # fmt: skip
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    chosen = args.variants or list(VARIANTS)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"ResNet-20 training throughput, batch {args.batch_size}, {args.steps} timed steps "
          f"after {args.warmup} warm-up", flush=True)  # fmt: skip
    results = [("notebook (ImageFolder + PIL + DataLoader x2, fp32)",
                notebook_pipeline(data_dir, args.steps, args.warmup, args.batch_size))]  # fmt: skip
    print(f"  measured notebook: {results[0][1]['images_per_s']:.0f} img/s", flush=True)
    for name in chosen:
        result = ours(data_dir, args.steps, args.warmup, args.batch_size, VARIANTS[name])
        results.append((name, result))
        print(f"  measured {name}: {result['images_per_s']:.0f} img/s", flush=True)

    base = results[0][1]["images_per_s"]
    width = max(len(name) for name, _ in results)
    cpu = platform.processor() or platform.machine()
    print()
    print(f"date {datetime.now().astimezone().isoformat(timespec='seconds')}, torch {torch.__version__}, "
          f"device cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")  # fmt: skip
    print(f"| {'pipeline'.ljust(width)} | images/s | ratio | startup s |")
    print(f"|{'-' * (width + 2)}|---------:|------:|----------:|")
    for name, result in results:
        print(f"| {name.ljust(width)} | {result['images_per_s']:8.0f} | "
              f"{result['images_per_s'] / base:4.2f}x | {result['startup_s']:9.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
