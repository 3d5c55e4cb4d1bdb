"""`exercise` subcommand of `python -m resnet_core`: a student writes a piece of a ResNet.

`exercise list` names the exercises; `exercise start EXERCISE [FILE]` writes the starter
(never over an existing file); `exercise check EXERCISE FILE` runs the file in a limited
process of its own and says what is wrong: exit 0 when every check passes, 1 when a check
fails (each failure explained), 2 when the file cannot be judged (one line why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_core.cli.main import CliError, whole_number
from resnet_core.common.files import check_output, write_new
from resnet_core.exercises import EXERCISES, get_exercise
from resnet_core.exercises.sandbox import Limits, judge_file

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
