"""`train`, `eval` and `runs` subcommands of `python -m resnet_core`.

`register(subparsers)` adds them to the lead's argparse parser (resnet_core/cli.py); every
handler takes the parsed args and returns an exit code. Progress goes to stderr (tqdm),
results to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["register", "cmd_train", "cmd_eval", "cmd_runs", "evaluate_run"]


def _add_bool(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(
        f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help_text
    )


def register(subparsers: Any) -> None:
    """Add the train, eval and runs subcommands to an argparse subparsers object."""
    from resnet_core.training.config import COMPILE_MODES, OPTIMIZERS, PRECISIONS, SCHEDULES

    train = subparsers.add_parser(
        "train",
        help="train a network on CIFAR-10 and record the run",
        description="Train a network; the run is recorded under checkpoints/runs/ "
        "($RESNET_EXPLORER_CHECKPOINTS/runs, or --runs-root) unless --run-dir is given.",
    )
    train.add_argument("--arch", "--model", dest="arch", default=None,
                       help="preset name (default resnet20) or a path to an ArchSpec .json")  # fmt: skip
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    train.add_argument("--lr", type=float, default=None, help="peak learning rate")
    train.add_argument("--momentum", type=float, default=None)
    _add_bool(train, "nesterov", "Nesterov momentum (SGD)")
    train.add_argument("--weight-decay", type=float, default=None)
    train.add_argument("--schedule", choices=SCHEDULES, default=None)
    train.add_argument("--warmup", type=float, default=None, help="fraction of steps")
    train.add_argument("--label-smoothing", type=float, default=None)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps")
    train.add_argument("--precision", choices=PRECISIONS, default=None)
    _add_bool(train, "channels-last", "NHWC memory format")
    _add_bool(train, "compile", "torch.compile the model (slow start)")
    train.add_argument("--compile-mode", choices=COMPILE_MODES, default=None,
                       help="torch.compile mode (reduce-overhead: CUDA graphs); implies --compile")  # fmt: skip
    train.add_argument("--subset", type=int, default=None, help="first N training images")
    train.add_argument("--data-dir", default=None,
                       help="CIFAR-10 folder (default $RESNET_EXPLORER_DATA, else ./data)")  # fmt: skip
    train.add_argument("--dataset", choices=("cifar10", "synthetic"), default=None)
    train.add_argument("--download", action="store_true", default=None,
                       help="download CIFAR-10 with torchvision if missing")  # fmt: skip
    train.add_argument("--eval-every", type=int, default=None, help="epochs between evaluations")
    train.add_argument("--grad-norm-every", type=int, default=None, help="steps (0 = off)")
    train.add_argument("--log-every", type=int, default=None, help="steps between step events")
    train.add_argument("--run-dir", default=None, help="record the run in exactly this folder")
    train.add_argument("--runs-root", default=None, help="folder holding run folders")
    train.add_argument("--resume", default=None, metavar="RUN", help="continue a run from last.pt")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (default: torch's choice; 1 is steadier on a busy machine)")  # fmt: skip
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--format", choices=("text", "json"), default="text", help="summary format")
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser(
        "eval", help="test accuracy of a recorded run's checkpoint",
        description="Evaluate best.pt (or last.pt) of a run on the CIFAR-10 test set.",
    )  # fmt: skip
    evaluate.add_argument("run", metavar="RUN_DIR", help="run folder or run id")
    evaluate.add_argument("--which", choices=("best", "last"), default="best")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--device", default=None, help="default: the run's device if available")
    evaluate.add_argument("--runs-root", default=None)
    evaluate.add_argument("--format", choices=("text", "json"), default="text")
    evaluate.set_defaults(func=cmd_eval)

    listing = subparsers.add_parser("runs", help="list recorded training runs")
    listing.add_argument("--root", "--runs-root", dest="root", default=None,
                         help="runs folder (default $RESNET_EXPLORER_CHECKPOINTS/runs, else checkpoints/runs)")  # fmt: skip
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--delete", metavar="RUN_ID", default=None, help="delete one run")
    listing.set_defaults(func=cmd_runs)


def _config_from_args(args: argparse.Namespace) -> Any:
    from resnet_core.common.errors import ConfigError
    from resnet_core.training.config import TrainConfig

    fields = {
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer,
        "lr": args.lr, "momentum": args.momentum, "nesterov": args.nesterov,
        "weight_decay": args.weight_decay, "schedule": args.schedule, "warmup": args.warmup,
        "label_smoothing": args.label_smoothing, "seed": args.seed, "device": args.device,
        "precision": args.precision, "channels_last": args.channels_last,
        "compile": True if args.compile_mode and args.compile is None else args.compile,
        "compile_mode": args.compile_mode, "subset": args.subset, "data_dir": args.data_dir,
        "dataset": args.dataset, "download": args.download, "eval_every": args.eval_every,
        "grad_norm_every": args.grad_norm_every, "log_every": args.log_every,
    }  # fmt: skip
    if args.arch is not None:
        if args.arch.endswith(".json"):
            try:
                fields["model"] = json.loads(Path(args.arch).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ConfigError(f"--arch: cannot read {args.arch} ({error})") from None
        else:
            fields["model"] = args.arch
    return TrainConfig(**{k: v for k, v in fields.items() if v is not None})


class _Progress:
    """tqdm bar on stderr fed by fit's events."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.postfix: dict[str, str] = {}

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        kind = event["event"]
        if kind == "start":
            from tqdm import tqdm

            tag = " [SYNTHETIC DATA]" if event["synthetic"] else ""
            print(f"training {event['model']} on {event['device']}, {event['num_train']} "
                  f"images ({event['dataset']}){tag}", file=sys.stderr)  # fmt: skip
            self.bar = tqdm(total=event["total_steps"], initial=event["start_epoch"] * event["steps_per_epoch"],
                            unit="step", file=sys.stderr, dynamic_ncols=True)  # fmt: skip
        elif kind == "step" and self.bar is not None:
            self.postfix.update(epoch=str(event["epoch"]), loss=f"{event['loss']:.3f}",
                                img_s=f"{event['images_per_s']:.0f}")  # fmt: skip
            self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(event["step"] - self.bar.n)
        elif kind == "epoch" and self.bar is not None:
            self.postfix["train_acc"] = f"{event['train_acc']:.3f}"
            if event["test_acc"] is not None:
                self.postfix["test_acc"] = f"{event['test_acc']:.3f}"
            self.bar.set_postfix(self.postfix)
        elif kind in ("done", "failed", "cancelled") and self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of `train`."""
    from resnet_core.training import runs
    from resnet_core.training.trainer import TrainingFailed, fit

    config = _config_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: {args.threads} must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    if args.resume is not None:
        resume = runs.resolve_run(args.resume, args.runs_root)
        saved = runs._read_json(resume / "config.json")  # noqa: SLF001 - same package
        base = config.from_dict(saved) if isinstance(saved, dict) else config
        overrides = {k: v for k, v in config.to_dict().items() if v != type(config)().to_dict()[k]}
        config = base.replace(**overrides)
        run_dir = Path(args.run_dir) if args.run_dir else resume
    else:
        resume = None
        run_dir = Path(args.run_dir) if args.run_dir else None
    # Fail fast on config/data/device problems before a run folder is created.
    from resnet_core.common.device import resolve_device
    from resnet_core.training.trainer import _load_data

    resolve_device(config.device)
    _load_data(config)
    if run_dir is None:
        run_dir = runs.new_run_dir(config.label(), args.runs_root)
    progress = _Progress(enabled=not args.no_progress)
    cancel = threading.Event()
    try:
        result = fit(config, on_event=progress, cancel=cancel, run_dir=run_dir, resume=resume)
    except TrainingFailed as error:
        print(f"training failed: {error} (run: {run_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; last.pt in {run_dir} holds the last finished epoch", file=sys.stderr)
        return 130
    summary = {
        "run_dir": str(run_dir),
        "state": result.state,
        "model": config.label(),
        "synthetic": config.synthetic,
        "epochs": result.epochs,
        "best_test_acc": result.best_test_acc,
        "final_test_acc": result.final_test_acc,
        "seconds": round(result.seconds, 2),
    }
    if args.format == "json":
        print(json.dumps(summary))
    else:
        tag = " (SYNTHETIC data)" if config.synthetic else ""
        acc = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"{result.state}: {config.label()}{tag}, {result.epochs} epoch(s) in "
              f"{result.seconds:.1f} s; test accuracy final {acc(result.final_test_acc)}, "
              f"best {acc(result.best_test_acc)}\nrun: {run_dir}")  # fmt: skip
    return 0 if result.state == "done" else 130


def evaluate_run(
    run: str | os.PathLike, which: str = "best", data_dir: str | None = None,
    device: str | None = None, root: str | os.PathLike | None = None,
) -> dict:  # fmt: skip
    """Evaluate a run's checkpoint on its test set the way training did.

    Uses the run's precision, channels_last and eval batch size, so the result matches the
    test accuracy recorded at that epoch.
    """
    from resnet_core.common.device import resolve_device
    from resnet_core.training import runs
    from resnet_core.training.config import TrainConfig
    from resnet_core.training.data import DeviceLoader
    from resnet_core.training.trainer import _load_data, evaluate

    run_dir = runs.resolve_run(run, root)
    saved = runs._read_json(run_dir / "config.json")  # noqa: SLF001 - same package
    if not isinstance(saved, dict):
        raise runs.RunError(f"{run_dir / 'config.json'}: missing or not a JSON object")
    config = TrainConfig.from_dict(saved)
    if data_dir is not None:
        config = config.replace(data_dir=data_dir)
    config = config.replace(subset=None if config.dataset == "cifar10" else config.subset)
    if device is None:
        device = config.device if config.device != "auto" else "auto"
        try:
            resolve_device(device)
        except ValueError:
            device = "auto"
    target = resolve_device(device)
    model, info = runs.load_run(run_dir, which=which, device=target)
    checkpoint = runs.load_checkpoint(run_dir / f"{which}.pt")
    data = _load_data(config)
    loader = DeviceLoader(data.test_images, data.test_labels, config.eval_batch_size, target,
                          train=False, channels_last=config.channels_last)  # fmt: skip
    loss, accuracy = evaluate(model, loader, config.precision)
    return {
        "run": info.id,
        "checkpoint": which,
        "epoch": checkpoint["epoch"],
        "test_acc": accuracy,
        "test_loss": loss,
        "recorded_test_acc": checkpoint.get("test_acc"),
        "num_test": len(data.test_labels),
        "dataset": data.source,
        "synthetic": data.synthetic,
        "device": str(target),
    }


def cmd_eval(args: argparse.Namespace) -> int:
    """Handler of `eval`."""
    result = evaluate_run(args.run, args.which, args.data_dir, args.device, args.runs_root)
    if args.format == "json":
        print(json.dumps(result))
    else:
        tag = " (SYNTHETIC data)" if result["synthetic"] else ""
        print(f"{result['run']} {result['checkpoint']}.pt (epoch {result['epoch']}): test accuracy "
              f"{result['test_acc']:.4f} on {result['num_test']} images{tag}")  # fmt: skip
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """Handler of `runs`."""
    from resnet_core.training import runs

    if args.delete:
        runs.delete_run(args.delete, args.root)
        print(f"deleted {args.delete}")
        return 0
    infos = runs.list_runs(args.root)
    if args.format == "json":
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    if not infos:
        print(f"no runs in {args.root or runs.default_root()}")
        return 0
    header = ("id", "model", "state", "best_acc", "epochs", "seconds", "device", "data")
    rows = [header]
    for info in infos:
        rows.append((
            info.id, info.model, info.state,
            "-" if info.best_test_acc is None else f"{info.best_test_acc:.4f}",
            f"{info.epoch}/{info.epochs}",
            "-" if info.seconds is None else f"{info.seconds:.0f}",
            info.device, "SYNTHETIC" if info.synthetic else "cifar10",
        ))  # fmt: skip
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
