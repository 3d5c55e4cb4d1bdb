"""A class server's rules for the job queue: what a student may queue, whose jobs and runs a
person may cancel or delete, and the teacher's limits, kept in one file every session reads.

Every rule is checked here, on the server, whatever a page shows or hides: a request a
student's browser forges is refused the same way as one made through the page. On a laptop
(`Person.role` "owner") nothing is limited.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_core.common.classroom import Person
from resnet_core.common.env import default_data_dir
from resnet_core.common.files import read_json, write_json_atomic
from resnet_core.common.records import checked_fields
from resnet_core.nets.size import estimate_params
from resnet_core.training.config import TrainConfig

__all__ = [
    "LIMITS_FILE",
    "ClassLimits",
    "NotYours",
    "OverLimit",
    "check_change",
    "check_request",
    "may_change",
    "owner_of_run",
    "read_limits",
    "write_limits",
]

LIMITS_FILE = "class.json"  # in the checkpoints folder, beside runs/ and queue/


class OverLimit(ValueError):
    """A student asked for more than the class's limits allow; the message says which."""


class NotYours(PermissionError):
    """A student asked to cancel or delete someone else's job or run."""


@dataclass(frozen=True)
class ClassLimits:
    """What one student may queue (the teacher sets these on the Runs page)."""

    jobs_each: int = 1  # queued or running jobs at once
    max_epochs: int = 10
    max_subset: int = 10_000  # training images; 0 (the whole set) counts as 50,000
    max_params: int = 2_000_000  # ResNet-110 has 1.7 M
    exercises: bool = False  # run students' exercise files on this server
    data_dir: str = ""  # the CIFAR-10 folder of students' runs; "" is the server's default

    def student_data_dir(self) -> str:
        return self.data_dir or str(default_data_dir())

    @classmethod
    def from_dict(cls, data: Any) -> ClassLimits:
        limits = cls(**checked_fields(cls, data, LIMITS_FILE))
        if min(limits.jobs_each, limits.max_epochs, limits.max_subset, limits.max_params) < 1:
            raise ValueError(f"{LIMITS_FILE}: every limit is a whole number of at least 1")
        return limits


def read_limits(root: str | os.PathLike) -> ClassLimits:
    """The teacher's limits from `root`/class.json; the defaults when it is missing or bad."""
    path = Path(root) / LIMITS_FILE
    try:
        return ClassLimits.from_dict(read_json(path)) if path.exists() else ClassLimits()
    except (OSError, ValueError, TypeError):
        return ClassLimits()


def write_limits(root: str | os.PathLike, limits: ClassLimits) -> None:
    """Keep the teacher's limits for every session (written whole, atomically)."""
    ClassLimits.from_dict(dataclasses.asdict(limits))  # refuse what could not be read back
    write_json_atomic(Path(root) / LIMITS_FILE, dataclasses.asdict(limits))


def check_request(
    person: Person, configs: Sequence[dict], active_jobs: Sequence[Any], limits: ClassLimits
) -> None:
    """Refuse (OverLimit) a student's job of `configs` (one, or a lockstep group's nets) that
    would go beyond `limits`, given the queue's active jobs; anyone in charge passes."""
    if person.in_charge:
        return
    mine = [job for job in active_jobs if person.owns(getattr(job, "owner", ""))]
    if len(mine) >= limits.jobs_each:
        raise OverLimit(
            f"You have {len(mine)} job(s) queued or running, the most this class allows each "
            f"student ({limits.jobs_each}). Wait for it to end, or cancel it, then start again."
        )
    for config in configs:
        _check_config(config, limits)


def _check_config(config: dict, limits: ClassLimits) -> None:
    """Server paths are the teacher's: a student's run reads the class's data folder, never
    downloads, and runs a student's code only when the teacher has turned that on."""
    if config.get("data_dir") not in (None, "", limits.student_data_dir()):
        raise OverLimit("data_dir: on a class server only the teacher picks the data folder.")
    if config.get("download"):
        raise OverLimit("download: on a class server only the teacher downloads data.")
    if config.get("student") and not limits.exercises:
        raise OverLimit("student: the teacher has not turned on running students' code.")
    parsed = TrainConfig.from_dict(config)
    subset = parsed.subset or 50_000
    params = estimate_params(parsed.spec())
    for what, value, most in (("epochs", parsed.epochs, limits.max_epochs),
                              ("training images", subset, limits.max_subset),
                              ("parameters", params, limits.max_params)):  # fmt: skip
        if value > most:
            raise OverLimit(
                f"{what}: {value:,} is more than this class allows ({most:,}); ask your "
                "teacher, or make it smaller."
            )


def may_change(person: Person, job: Any) -> bool:
    """Whether `person` may cancel or delete `job` (anything with `owner`; None, a run no job
    wrote, is nobody's and so the teacher's alone)."""
    return person.owns(getattr(job, "owner", ""))


def check_change(person: Person, job: Any) -> None:
    """Refuse (NotYours) to let `person` cancel or delete `job` (see `may_change`)."""
    if not may_change(person, job):
        raise NotYours("This run is someone else's: only they or the teacher can change it.")


def owner_of_run(jobs: Sequence[Any], run_id: str) -> Any:
    """The job that wrote `run_id` (its `owner` says whose run it is), or None: a run from
    the command line or a shipped one belongs to nobody, so only the teacher may delete it."""
    return next((job for job in jobs if run_id in job.run_ids), None)
