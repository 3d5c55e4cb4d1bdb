"""`exercise` subcommand of `python -m resnet_core`: a student writes a piece of a ResNet.

`exercise list` names the exercises; `exercise start EXERCISE [FILE]` writes the starter
(never over an existing file); `exercise check EXERCISE FILE` runs the file in a limited
process of its own and says what is wrong: exit 0 when every check passes, 1 when a check
fails (each failure explained), 2 when the file cannot be judged (one line why).
`exercise train simple_resnet FILE` checks it, then trains the student's net beside the plain
net and the reference ResNet in lockstep (this process runs the student's code, under the
exercise's memory limit), and says how close the student's curve stayed to the reference's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from resnet_core.cli.main import CliError, whole_number
from resnet_core.common.device import resolve_device
from resnet_core.common.env import runs_root
from resnet_core.common.files import check_output, read_regular_text, write_new
from resnet_core.exercises import EXERCISES, get_exercise
from resnet_core.exercises.sandbox import (
    MAX_SOURCE_BYTES,
    Limits,
    judge_file,
    limit_training,
    save_for_training,
)
from resnet_core.exercises.student_nets import student_files, student_group
from resnet_core.training.config import TrainConfig
from resnet_core.training.lockstep import fit_group
from resnet_core.training.runs import new_run_dir
from resnet_core.training.state import check_resources

__all__ = ["register"]


def _cmd_list(args: argparse.Namespace) -> int:
    for exercise in EXERCISES.values():
        sys.stdout.write(
            f"{exercise.id:16s} {exercise.title} (write class {exercise.class_name})\n"
        )
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    exercise = get_exercise(args.exercise)
    out = check_output(args.file or f"{exercise.id}.py")
    try:
        write_new(out, lambda stream: stream.write(exercise.starter.encode("utf-8")))
    except FileExistsError:
        raise CliError(f"{out}: appeared meanwhile; nothing replaced") from None
    sys.stdout.write(
        f"wrote {out}: fill in the TODOs, then run\n"
        f"  python -m resnet_core exercise check {exercise.id} {out}\n"
    )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    limits = Limits(wall_s=float(args.seconds), cpu_s=args.seconds)
    verdict = judge_file(args.exercise, Path(args.file), limits)
    if verdict.output.strip():
        sys.stdout.write(f"(your code printed)\n{verdict.output.rstrip()}\n")
    if verdict.report is not None:
        sys.stdout.write(verdict.report["text"] + "\n")
        return verdict.code
    sys.stderr.write(f"error: {verdict.message}\n")
    return 2


class GroupProgress:
    """Prints a lockstep group's progress: every `every` steps the members' losses, at each
    epoch's end their test accuracy; `summary` is the last word, with `twin_sentence`."""

    def __init__(self, labels: list[str], out: TextIO, every: int = 10) -> None:
        self.labels, self.out, self.every = labels, out, every
        self.events: dict[str, list[dict]] = {label: [] for label in labels}
        self.losses: dict[int, dict[int, float]] = {}

    def __call__(self, index: int, event: dict) -> None:
        self.events[self.labels[index]].append(event)
        kind = event.get("event")
        if kind == "step":
            losses = self.losses.setdefault(event["step"], {})
            losses[index] = event["loss"]
            if len(losses) == len(self.labels) and event["step"] % self.every == 0:
                parts = ", ".join(f"{self.labels[i]} {losses[i]:.3f}" for i in sorted(losses))
                self.out.write(f"step {event['step']}: training loss {parts}\n")
        elif kind == "epoch" and event.get("test_acc") is not None:
            self.out.write(f"epoch {event['epoch']}: {self.labels[index]} test accuracy "
                           f"{100 * event['test_acc']:.1f} %\n")  # fmt: skip
        elif kind == "failed":
            self.out.write(f"{self.labels[index]} failed: {event.get('message', '')}\n")
        self.out.flush()

    def summary(self, results: list, folders: list[Path]) -> str:
        # the views draw charts too (altair): imported only once there is something to say
        from resnet_core.views.lockstep import lockstep_frames, lockstep_sentence, twin_sentence

        lines = [f"{label}: {result.state}, recorded in {folder}"
                 for label, result, folder in zip(self.labels, results, folders)]  # fmt: skip
        frames = lockstep_frames(self.events)
        lines.append(twin_sentence(frames, self.labels[0], self.labels[2]))
        lines.append(lockstep_sentence(frames))
        return "\n".join(line for line in lines if line)


def _cmd_train(args: argparse.Namespace) -> int:
    code = _cmd_check(args)  # the checks first, in their limited process
    if code != 0:  # 2: its one line is said already
        if code == 1:
            sys.stderr.write("error: only a file that passes every check is trained\n")
        return code
    root = Path(args.runs_root) if args.runs_root else runs_root()
    source = read_regular_text(args.file, MAX_SOURCE_BYTES)
    saved = save_for_training(source, student_files(root))
    settings = {"epochs": args.epochs, "subset": args.subset, "batch_size": args.batch_size,
                "seed": args.seed, "device": args.device, "data_dir": args.data_dir}  # fmt: skip
    configs = [TrainConfig.from_dict(c) for c in student_group(saved, args.n_blocks, settings)]
    device = resolve_device(args.device)
    check_resources(configs[0], device)
    folders = [new_run_dir(config.label(), root) for config in configs]
    limit_training([c.to_dict() for c in configs], device.type)
    progress = GroupProgress([config.label() for config in configs], sys.stdout)
    results = fit_group(configs, folders, on_event=progress)
    sys.stdout.write(progress.summary(results, folders) + "\n")
    return 0 if all(result.state == "done" for result in results) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "exercise", help="write a piece of a ResNet; the checks say what is wrong"
    )
    actions = parser.add_subparsers(dest="exercise_action", required=True)
    actions.add_parser("list", help="the exercises").set_defaults(func=_cmd_list)
    start = actions.add_parser("start", help="write an exercise's starter file")
    start.add_argument("exercise", choices=list(EXERCISES))
    start.add_argument("file", nargs="?", default=None, help="default: EXERCISE.py here")
    start.set_defaults(func=_cmd_start)
    check = actions.add_parser("check", help="check your file; exit 0 pass, 1 fail, 2 unjudged")
    check.add_argument("exercise", choices=list(EXERCISES))
    check.add_argument("file")
    check.add_argument(
        "--seconds", type=whole_number(1, 600), default=60, help="time limit (default 60)"
    )
    check.set_defaults(func=_cmd_check)
    train = actions.add_parser(
        "train",
        help="check your net, then train it beside the plain net and the reference ResNet",
        description="Checks the file; if every check passes, trains its SimpleResNet, the "
        "plain net of the same depth and the reference ResNet in lockstep on the same batches "
        "(your net starts from the reference's weights), each recorded as a run.",
    )
    train.add_argument("exercise", choices=[e.id for e in EXERCISES.values() if e.trains])
    train.add_argument("file")
    train.add_argument(
        "--n-blocks", type=whole_number(1, 18), default=3, help="n of 6n+2 (3: 20 layers)"
    )
    train.add_argument("--epochs", type=whole_number(1, 200), default=1)
    train.add_argument(
        "--subset",
        type=whole_number(64, 50_000),
        default=5000,
        help="training images (default 5000)",
    )
    train.add_argument("--batch-size", type=whole_number(1, 1024), default=128)
    train.add_argument("--seed", type=whole_number(0, 2**31 - 1), default=0)
    train.add_argument("--device", default="auto")
    train.add_argument("--data-dir", default=None)
    train.add_argument("--runs-root", default=None, help="folder holding run folders")
    train.add_argument(
        "--seconds", type=whole_number(1, 600), default=60, help="the check's time limit"
    )
    train.set_defaults(func=_cmd_train)
