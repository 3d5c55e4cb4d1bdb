"""`train`, `eval` and `runs` subcommands of `python -m resnet_core`.

`register(subparsers)` adds them to the parser of `resnet_core.cli.main`; every handler takes
the parsed args and returns an exit code. The train flags are generated from TrainConfig's
fields: `--field-name`, with the field's type, choices and help (from its metadata); a
true/false field gets `--field-name` and `--no-field-name`, a list field (`--milestones 8,12`)
takes text that TrainConfig parses. Progress goes to stderr (tqdm), results to stdout.
Under torchrun (`torchrun --nproc_per_node N -m resnet_core train ...`) `train` trains
data-parallel (`resnet_core.training.distributed`); rank 0 alone records and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import torch
from tqdm import tqdm

from resnet_core.common.device import resolve_device
from resnet_core.common.errors import ConfigError
from resnet_core.common.files import read_json, read_regular_text
from resnet_core.nets.spec import parse_json
from resnet_core.training import runs
from resnet_core.training.callbacks import Callback
from resnet_core.training.config import TrainConfig, field_help
from resnet_core.training.distributed import ranks_from_env
from resnet_core.training.events import EpochEnd, Note, Start, Step
from resnet_core.training.parts import eval_loader
from resnet_core.training.state import load_data
from resnet_core.training.trainer import Trainer, TrainingFailed, evaluate

__all__ = ["register", "config_from_args", "cmd_train", "cmd_eval", "cmd_runs", "evaluate_run"]


# Flag names besides --field-name, and what the command line adds to a field's help.
_ALIASES = {"model": ("--arch",)}
_CLI_HELP = {
    "model": " (here: a path to its .json file)",
    "compile_mode": "; implies --compile unless --no-compile is given",
    "milestones": "; implies --schedule step unless --schedule is given",
    "batch_size": "; under torchrun the global batch, split evenly over the processes "
    "(it must be a multiple of their number)",
}
_FLAG_TYPES = (bool, int, float, str)


def _flag_type(name: str, annotation: Any) -> type:
    """The argparse type of a TrainConfig field: its annotation without None (`int | None`:
    int); for unions, the first of bool, int, float, str among its members (`str | dict`: str);
    a tuple (`tuple[int, ...] | None`) is text such as "8,12", which TrainConfig parses.
    """
    members = get_args(annotation) or (annotation,)
    for kind in _FLAG_TYPES:
        if kind in members:
            return kind
    if any(get_origin(member) is tuple for member in members):
        return str
    raise TypeError(f"TrainConfig.{name}: no command-line flag for type {annotation!r}")


# A student's exercise file is trained by `exercise train`, which checks it first and runs it
# under the exercise's memory limit.
NOT_FLAGS = ("student",)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, all defaulting to None (= keep the config's default)."""
    group = parser.add_argument_group(
        "training settings", "TrainConfig fields; a flag not given keeps the field's default"
    )
    hints = get_type_hints(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        if item.name in NOT_FLAGS:
            continue
        kind = _flag_type(item.name, hints[item.name])
        names = (*_ALIASES.get(item.name, ()), "--" + item.name.replace("_", "-"))
        # argparse %-formats help texts, so a literal % is written %%.
        text = (field_help(item.name) + _CLI_HELP.get(item.name, "")).replace("%", "%%")
        options: dict[str, Any] = {"dest": item.name, "default": None, "help": text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind
            options["choices"] = item.metadata.get("choices")
        group.add_argument(*names, **options)


def _add_train(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a network on CIFAR-10 and record the run",
        description="Train a network; the run is recorded under checkpoints/runs/ "
        "($RESNET_EXPLORER_CHECKPOINTS/runs, or --runs-root) unless --run-dir is given. "
        "Started by torchrun (torchrun --nproc_per_node N -m resnet_core train ...), it trains "
        "data-parallel over N processes: one per GPU (nccl), or on the CPU (gloo); "
        "--batch-size is then the global batch and rank 0 alone records the run.",
    )
    _add_config_flags(train)
    train.add_argument("--run-dir", default=None, help="record the run in exactly this folder")
    train.add_argument("--runs-root", default=None, help="folder holding run folders")
    train.add_argument("--resume", default=None, metavar="RUN", help="continue a run from last.pt")
    train.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is steadier on a busy machine)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--format", choices=("text", "json"), default="text", help="summary format")
    train.set_defaults(func=cmd_train)


def register(subparsers: Any) -> None:
    """Add the train, eval and runs subcommands to an argparse subparsers object."""
    _add_train(subparsers)

    eval_parser = subparsers.add_parser(
        "eval",
        help="test accuracy of a recorded run's checkpoint",
        description="Evaluate best.pt (or last.pt) of a run on the CIFAR-10 test set.",
    )
    eval_parser.add_argument("run", metavar="RUN_DIR", help="run folder or run id")
    eval_parser.add_argument("--which", choices=("best", "last"), default="best")
    eval_parser.add_argument("--data-dir", default=None)
    eval_parser.add_argument(
        "--device", default=None, help="default: the run's device if available"
    )
    eval_parser.add_argument("--runs-root", default=None)
    eval_parser.add_argument("--format", choices=("text", "json"), default="text")
    eval_parser.set_defaults(func=cmd_eval)

    listing = subparsers.add_parser("runs", help="list recorded training runs")
    listing.add_argument(
        "--root",
        "--runs-root",
        dest="root",
        default=None,
        help="runs folder (default $RESNET_EXPLORER_CHECKPOINTS/runs, else checkpoints/runs)",
    )
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--delete", metavar="RUN_ID", default=None, help="delete one run")
    listing.set_defaults(func=cmd_runs)


def _read_arch(value: str) -> str | dict:
    """--arch: a preset name as given, or the ArchSpec dict in a .json file."""
    if not value.endswith(".json"):
        return value
    try:
        text = read_regular_text(value)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--arch: cannot read {value} ({error})") from None
    return parse_json(text, f"--arch {value}")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the train flags given; the others keep the field defaults."""
    values = {item.name: getattr(args, item.name, None) for item in dataclasses.fields(TrainConfig)}
    if values["compile_mode"] is not None and values["compile"] is None:
        values["compile"] = True
    if values["milestones"] is not None and values["schedule"] is None:
        values["schedule"] = "step"
    if values["model"] is not None:
        values["model"] = _read_arch(values["model"])
    return TrainConfig(**{name: value for name, value in values.items() if value is not None})


class Notes(Callback):
    """Prints what the run changed on its own (e.g. torch.compile turned off), with why."""

    def on_note(self, trainer: Trainer, event: Note) -> None:
        tqdm.write(f"note: {event.message}", file=sys.stderr)


class Progress(Callback):
    """tqdm bar on stderr, fed by the trainer's events."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.postfix: dict[str, str] = {}

    def on_start(self, trainer: Trainer, event: Start) -> None:
        tag = " [SYNTHETIC DATA]" if event.synthetic else ""
        print(
            f"training {event.model} on {event.device}, {event.num_train} "
            f"images ({event.dataset}){tag}",
            file=sys.stderr,
        )
        self.bar = tqdm(
            total=event.total_steps,
            initial=event.start_epoch * event.steps_per_epoch,
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def on_step(self, trainer: Trainer, event: Step) -> None:
        if self.bar is None:
            return
        self.postfix.update(
            epoch=str(event.epoch), loss=f"{event.loss:.3f}", img_s=f"{event.images_per_s:.0f}"
        )
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(event.step - self.bar.n)

    def on_epoch(self, trainer: Trainer, event: EpochEnd) -> None:
        if self.bar is None:
            return
        self.postfix["train_acc"] = f"{event.train_acc:.3f}"
        if event.test_acc is not None:
            self.postfix["test_acc"] = f"{event.test_acc:.3f}"
        self.bar.set_postfix(self.postfix)

    def on_close(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of `train`."""
    config = config_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: {args.threads} must be >= 1")
        torch.set_num_threads(args.threads)
    if args.resume is not None:
        resume = runs.resolve_run(args.resume, args.runs_root)
        saved = read_json(resume / "config.json")
        if not isinstance(saved, dict):  # never train with defaults over a run's settings
            raise runs.RunError(f"{resume / 'config.json'}: unreadable; this run cannot be resumed")
        base = config.from_dict(saved)
        overrides = {k: v for k, v in config.to_dict().items() if v != type(config)().to_dict()[k]}
        config = base.replace(**overrides)
        run_dir = Path(args.run_dir) if args.run_dir else resume
    else:
        resume = None
        run_dir = Path(args.run_dir) if args.run_dir else None
    ranks = ranks_from_env()
    main = ranks is None or ranks.main  # under torchrun, rank 0 alone records and reports
    progress = [] if not main else [Notes()] if args.no_progress else [Notes(), Progress()]
    # a --run-dir holding another run is refused here, before any data is loaded
    trainer = Trainer(config, progress, run_dir=run_dir, resume=resume, ranks=ranks)
    trainer.setup()  # config, data and device problems stop here, before a run folder exists
    if not main:
        return _train_quietly(trainer)
    if run_dir is None:
        run_dir = runs.new_run_dir(config.label(), args.runs_root)
        trainer.record_in(run_dir)
    try:
        result = trainer.fit()
    except TrainingFailed as error:
        print(f"training failed: {error} (run: {run_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; last.pt in {run_dir} holds the last finished epoch", file=sys.stderr)
        return 130
    _print_summary(args, config, result, run_dir)
    return 0 if result.state == "done" else 130


def _train_quietly(trainer: Trainer) -> int:
    """A data-parallel rank other than 0: train, write and print nothing but a failure."""
    try:
        result = trainer.fit()
    except TrainingFailed as error:
        print(f"rank {trainer.ranks.rank}: training failed: {error}", file=sys.stderr)
        return 1
    return 0 if result.state == "done" else 130


def _print_summary(
    args: argparse.Namespace, config: TrainConfig, result: Any, run_dir: Path
) -> None:
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
        return
    tag = " (SYNTHETIC data)" if config.synthetic else ""
    acc = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(
        f"{result.state}: {config.label()}{tag}, {result.epochs} epoch(s) in "
        f"{result.seconds:.1f} s; test accuracy final {acc(result.final_test_acc)}, "
        f"best {acc(result.best_test_acc)}\nrun: {run_dir}"
    )


def evaluate_run(
    run: str | os.PathLike,
    which: str = "best",
    data_dir: str | None = None,
    device: str | None = None,
    root: str | os.PathLike | None = None,
) -> dict:
    """Evaluate a run's checkpoint on its test set the way training did.

    Uses the run's precision, channels_last, eval batch size and test-time augmentation, so
    the result matches the test accuracy recorded at that epoch.
    """
    run_dir = runs.resolve_run(run, root)
    saved = read_json(run_dir / "config.json")
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
    data = load_data(config)
    loader = eval_loader(config, data, target)
    loss, accuracy = evaluate(model, loader, config.precision, tta=config.tta)
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
        print(
            f"{result['run']} {result['checkpoint']}.pt (epoch {result['epoch']}): test accuracy "
            f"{result['test_acc']:.4f} on {result['num_test']} images{tag}"
        )
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """Handler of `runs`."""
    if args.delete is not None:
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
        rows.append(
            (
                info.id,
                info.model,
                info.state,
                "-" if info.best_test_acc is None else f"{info.best_test_acc:.4f}",
                f"{info.epoch}/{info.epochs}",
                "-" if info.seconds is None else f"{info.seconds:.0f}",
                info.device,
                "SYNTHETIC" if info.synthetic else "cifar10",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
