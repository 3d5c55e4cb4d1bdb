"""Time-to-accuracy on CIFAR-10: train until a target test accuracy or a time cap.

Targets (He et al. 2016, https://arxiv.org/abs/1512.03385): CIFAR ResNet-20 91.25% (Table 6,
after 64k iterations); CIFAR ResNet-18 to 94%. Goals on one H100: ResNet-20 <= 8 s,
ResNet-18 <= 20 s of training. The run uses the library's `fit` (device-resident data,
bf16 autocast, channels_last, one-cycle, label smoothing); the time reported is training
time (sum of the epochs' train seconds, evaluation excluded), with wall time beside it.

    python benchmarks/speedrun.py --preset resnet20 --data-dir DIR --time-cap 60 --out r20.json
    python benchmarks/speedrun.py --preset resnet20 --data-dir DIR --compile-mode reduce-overhead \
        --warmup-run     # CUDA graphs; the warm-up run pays for compilation outside the timing

Results go to stdout as a table and, with --out, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from resnet_core.training.callbacks import Callback  # noqa: E402
from resnet_core.training.config import COMPILE_MODES, TrainConfig  # noqa: E402
from resnet_core.training.events import EpochEnd, Start  # noqa: E402
from resnet_core.training.trainer import Trainer, fit  # noqa: E402

# Recipes: one-cycle SGD with Nesterov momentum, label smoothing, batch 512, bf16.
_RECIPE = dict(batch_size=512, lr=0.4, weight_decay=5e-4, label_smoothing=0.1)
PRESETS = {
    "resnet20": dict(_RECIPE, target=0.9125, model="resnet20", epochs=60, warmup=0.15),
    "resnet18": dict(_RECIPE, target=0.94, model="resnet18", epochs=40, warmup=0.2),
}


class _Stop:
    """Cancel flag for fit: set when the target is reached or the time cap is hit."""

    def __init__(self, time_cap: float) -> None:
        self.event = threading.Event()
        self.deadline = time.perf_counter() + time_cap

    def is_set(self) -> bool:
        return self.event.is_set() or time.perf_counter() > self.deadline


class _Watch(Callback):
    """Records and prints each epoch, and stops the run at the target."""

    def __init__(self, target: float, stop: _Stop) -> None:
        self.target = target
        self.stop = stop
        self.rows: list[dict] = []
        self.info: dict = {}
        self.reached: dict = {}
        self.train_seconds = 0.0

    def on_start(self, trainer: Trainer, event: Start) -> None:
        self.info.update(device=event.device, dataset=event.dataset, synthetic=event.synthetic)

    def on_epoch(self, trainer: Trainer, event: EpochEnd) -> None:
        self.train_seconds += event.seconds
        row = {
            "epoch": event.epoch,
            "test_acc": event.test_acc,
            "train_seconds": round(self.train_seconds, 3),
            "wall_seconds": round(event.elapsed, 3),
        }
        self.rows.append(row)
        accuracy = "n/a" if event.test_acc is None else f"{event.test_acc:.4f}"
        print(
            f"epoch {row['epoch']:3d}  test_acc {accuracy}  "
            f"train {row['train_seconds']:7.2f} s  wall {row['wall_seconds']:7.2f} s",
            flush=True,
        )
        if not self.reached and event.test_acc is not None and event.test_acc >= self.target:
            self.reached.update(row)
            self.stop.event.set()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="resnet20")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="schedule length")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--time-cap", type=float, default=120.0, help="seconds, wall")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        default=None,
        help="torch.compile mode; implies --compile (reduce-overhead = CUDA graphs)",
    )
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument(
        "--warmup-run",
        action="store_true",
        help="one short untimed run first (cuDNN autotune, compile caches)",
    )
    parser.add_argument("--out", default=None, help="write results as JSON here")
    return parser


def _config(args: argparse.Namespace) -> tuple[TrainConfig, float]:
    """The preset's recipe with the command line's changes, and the target accuracy."""
    recipe = dict(PRESETS[args.preset])
    target = args.target if args.target is not None else recipe.pop("target")
    recipe.pop("target", None)
    for key in ("epochs", "batch_size", "lr"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    config = TrainConfig(
        **recipe,
        device=args.device,
        precision=args.precision,
        channels_last=True,
        compile=args.compile or args.compile_mode is not None,
        compile_mode=args.compile_mode or "default",
        data_dir=args.data_dir,
        dataset=args.dataset,
        subset=args.subset,
        log_every=50,
    )
    return config, target


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config, target = _config(args)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    if args.warmup_run:
        fit(config.replace(epochs=1, subset=config.batch_size * 20))

    stop = _Stop(args.time_cap)
    watch = _Watch(target, stop)
    rows, info, reached = watch.rows, watch.info, watch.reached

    started = time.perf_counter()
    result = Trainer(config, [watch], cancel=stop).fit()
    wall = time.perf_counter() - started
    summary = {
        "preset": args.preset,
        "target": target,
        "reached": bool(reached),
        "time_to_target_train_s": reached.get("train_seconds"),
        "time_to_target_wall_s": reached.get("wall_seconds"),
        "epoch_reached": reached.get("epoch"),
        "best_test_acc": max(
            (r["test_acc"] for r in rows if r["test_acc"] is not None), default=None
        ),
        "epochs_run": len(rows),
        "state": result.state,
        "wall_s_including_startup": round(wall, 2),
        "config": config.to_dict(),
        "epochs": rows,
        "torch": str(torch.__version__),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        **info,
    }
    verdict = (
        f"reached {target:.2%} at epoch {reached['epoch']} after "
        f"{reached['train_seconds']:.2f} s of training ({reached['wall_seconds']:.2f} s wall)"
        if reached
        else f"did NOT reach {target:.2%}; best {summary['best_test_acc']}"
    )
    print(f"{args.preset} on {info.get('device')}: {verdict}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
