"""The exercises as the lecture and the pages show them: the commands a student runs, in the
order they meet them, and every mistake the checks name (from the catalog, nothing typed
twice)."""

from __future__ import annotations

import pandas as pd

from resnet_core.exercises import EXERCISES

__all__ = ["your_turn_commands", "your_turn_mistakes"]


def your_turn_commands() -> str:
    """The commands of the exercises, in the order a student meets them (from the catalog)."""
    lines = []
    for exercise in EXERCISES.values():
        lines += [f"python -m resnet_core exercise start {exercise.id}",
                  f"python -m resnet_core exercise check {exercise.id} {exercise.id}.py"]  # fmt: skip
        if exercise.trains:
            lines.append(f"python -m resnet_core exercise train {exercise.id} {exercise.id}.py")
    return "\n".join(lines)


def your_turn_mistakes() -> pd.DataFrame:
    """Every mistake the checks name, by exercise (the catalog's `catches`)."""
    rows = [(e.title, catch) for e in EXERCISES.values() for catch in e.catches]
    return pd.DataFrame(rows, columns=["exercise", "the checker names"])
