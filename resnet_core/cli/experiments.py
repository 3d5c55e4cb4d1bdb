"""`python -m resnet_core experiment NAME`: run one of the lecture's experiments."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from resnet_core.training.experiment_runner import run_experiment
from resnet_core.training.experiments import get_experiment, list_experiments

__all__ = ["register"]


def _duration(seconds: float) -> str:
    """e.g. "45 s", "12 min", "2 h 05 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def _cmd_experiment(args: argparse.Namespace) -> int:
    experiment = get_experiment(args.name)  # unknown names fail before anything starts
    sys.stderr.write(f"{experiment.name}: {experiment.title}\n")

    failed: list[str] = []
    started = time.monotonic()

    def progress(done: int | None, total: int | None) -> str:
        if not done or not total:
            return ""
        elapsed = time.monotonic() - started
        left = "" if done == total else f", about {_duration(elapsed / done * (total - done))} left"
        return f" ({done}/{total} runs, {_duration(elapsed)} so far{left})"

    def report(event: dict) -> None:
        result = event.get("result", {})
        if result.get("event") == "failed":
            failed.append(event["label"])
        best = result.get("best_test_acc")
        best_text = f"{best:.3f}" if isinstance(best, float) else "n/a"
        sys.stderr.write(
            f"  {event['label']}: {result.get('event', '?')}, best test acc {best_text}"
            f"{progress(event.get('done'), event.get('total'))}\n"
        )

    folder = run_experiment(
        args.name,
        args.out,
        epochs=args.epochs,
        device=args.device,
        data_dir=args.data_dir,
        jobs=args.jobs,
        on_event=report,
        command=" ".join(["python -m resnet_core", *map(shlex.quote, sys.argv[1:])]),
        resume=args.resume,
    )
    sys.stdout.write(f"{folder}\n")
    if failed:
        sys.stderr.write(f"error: {len(failed)} run(s) failed: {', '.join(failed)}\n")
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="run a lecture experiment into run folders")
    parser.add_argument("name", choices=list_experiments())
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--out", default="checkpoints/experiments", help="folder for <name>/")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (GPU)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted run of this experiment in --out: finished runs kept, "
        "stopped ones continued from their last epoch",
    )
    parser.set_defaults(func=_cmd_experiment)
