"""Exercises: a student writes a piece of a ResNet and is told, with numbers, what is wrong.
`catalog` lists the exercises (starter, hints, checks) and `check(exercise_id, cls)`;
`block_checks` judges a residual block by what it computes, `bottleneck_checks` a bottleneck
block, `net_checks` a small ResNet built from the student's block; `report` holds what the checks found, as text and as HTML for a
notebook; `sandbox` runs a student's file in a process of its own under time, CPU and memory
limits; `student_nets` trains a student's net that passed, as the reference net it matches.

May import: `resnet_core.common` and `resnet_core.nets`.
"""

from resnet_core.exercises.catalog import EXERCISES, check, get_exercise

__all__ = ["EXERCISES", "check", "get_exercise"]
