"""A training job queue kept in files, so runs outlive page reloads and app restarts.

Layout under the checkpoints root (`$RESNET_EXPLORER_CHECKPOINTS`, default ./checkpoints)::

    queue/<job_id>.json     one job: config, state, device, run_id, pid, message
    queue/<job_id>.cancel   present once someone asked the job to stop
    queue/.lock             held (flock) while the queue is changed
    runs/<run_id>/          what `resnet_core.training.fitting.fit` writes (metrics.jsonl, status.json, ...)

`JobQueue.submit` validates a config and writes a queued job. `JobQueue.pump` starts queued
jobs, oldest first, wherever a slot is free: one job at a time on the CPU (or MPS),
`jobs_per_device` at a time on each GPU. A job that asked for `cuda` (or `auto` on a GPU
machine) goes to the least busy GPU when it starts; one that asked for `cuda:3` waits for
that GPU; one that asked for `gpus=N` takes a slot on N GPUs and trains data-parallel through
torchrun. The devices a job got are recorded in its `placed` field and in its run folder.
Each job runs as a separate process
(`python -m resnet_core.training.job_worker run queue/<job_id>.json`, see
`resnet_core.training.job_worker`) in its own session, so the job keeps going if the app that
started it goes away. `JobRunner` calls `pump` from a daemon thread.
Any number of app processes may share one root: the lock makes starting a job atomic.
The worker process checks for the cancel file between steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_core.common.device import cuda_devices, queue_key, resolve_device
from resnet_core.common.env import checkpoints_root
from resnet_core.common.env import jobs_per_device as jobs_per_device_setting
from resnet_core.common.files import (
    parse_json,
    pid_alive,
    read_regular_text,
    write_json_atomic,
)
from resnet_core.common.records import checked_fields
from resnet_core.common.text import plain_label
from resnet_core.nets.spec import SpecError, resolve_spec, spec_label
from resnet_core.training.config import TrainConfig
from resnet_core.training.lockstep import check_group
from resnet_core.training.runs import validate_run_id
from resnet_core.training.state import check_resources

__all__ = [
    "ACTIVE",
    "FINISHED",
    "Job",
    "JobQueue",
    "JobRunner",
    "gpu_choices",
]

ACTIVE = ("queued", "starting", "running")
FINISHED = ("done", "failed", "cancelled", "interrupted")


@dataclass
class Job:
    """One training request and where it stands."""

    job_id: str
    run_id: str
    config: dict[str, Any]
    device: str
    label: str = ""
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    message: str = ""
    advice: str = ""
    # A lockstep group (one job, several nets on the same batches): one entry per net with
    # its run_id, config and label; `run_id` and `config` are the first net's. Empty for one run.
    members: list[dict[str, Any]] = field(default_factory=list)
    gpus: int = 1  # GPUs the job trains on at once (more than 1: data-parallel, torchrun)
    placed: list[str] = field(default_factory=list)  # the devices it got when it started
    # Who queued it on a class server (`resnet_core.common.classroom.Person.key`, name)
    owner: str = ""
    owner_name: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def run_ids(self) -> list[str]:
        """Every run folder this job writes (one per net of a group)."""
        return [member["run_id"] for member in self.members] or [self.run_id]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Rebuild from a queue file; ValueError for a wrong-typed field or a bad run id."""
        job = cls(**checked_fields(cls, data, "queue file"))
        job.label, job.state = plain_label(job.label), plain_label(job.state)
        for member in job.members:
            if not isinstance(member, dict) or not isinstance(member.get("config"), dict):
                raise ValueError("queue file: a group member needs a config")
            member["label"] = plain_label(member.get("label", ""))  # names reach sentences
        for run_id in job.run_ids:
            validate_run_id(run_id)  # the worker writes into runs/<run_id>
        return job


class JobQueue:
    """Jobs as files under `root/queue`, runs under `root/runs`.

    Args:
        root: checkpoints folder (default `checkpoints_root()`).
        worker: command prefix that runs one job file (default: `job_worker`'s `run`).
        validate: called with a config dict on submit; raises on a bad config. Default:
            `TrainConfig.from_dict`.
        devices: the GPUs jobs may be placed on (default: every GPU torch sees).
        jobs_per_device: jobs running at once on one GPU (default:
            $RESNET_EXPLORER_JOBS_PER_DEVICE, else 1). The CPU always runs one at a time.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        worker: Sequence[str] | None = None,
        validate: Callable[[dict], Any] | None = None,
        devices: Sequence[str] | None = None,
        jobs_per_device: int | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else checkpoints_root()
        self.queue_dir = self.root / "queue"
        self.runs_dir = self.root / "runs"
        self.worker = (
            list(worker)
            if worker
            else [sys.executable, "-m", "resnet_core.training.job_worker", "run"]
        )
        self.validate = validate or _validate_config
        self.devices = list(devices) if devices is not None else None
        self.jobs_per_device = jobs_per_device or jobs_per_device_setting()
        if self.jobs_per_device < 1:
            raise ValueError(f"jobs_per_device: {self.jobs_per_device} must be >= 1")
        self._children: dict[str, subprocess.Popen] = {}

    # Reading ---------------------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        return self.queue_dir / f"{job_id}.json"

    def get(self, job_id: str) -> Job | None:
        try:
            return Job.from_dict(parse_json(read_regular_text(self._path(job_id))))
        except (OSError, ValueError, TypeError):  # a broken queue file is skipped
            return None

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        if not self.queue_dir.is_dir():
            return []
        found = (
            self.get(path.stem)
            for path in self.queue_dir.glob("*.json")
            if not path.name.startswith(".")
        )
        return sorted(
            (job for job in found if job is not None), key=lambda job: (job.created, job.job_id)
        )

    def active(self) -> list[Job]:
        return [job for job in self.jobs() if job.active]

    def position(self, job_id: str) -> int | None:
        """1 for the next queued job on its device, 2 for the one after, ...; None if not queued."""
        jobs = self.jobs()
        job = next((j for j in jobs if j.job_id == job_id), None)
        if job is None or job.state != "queued":
            return None
        waiting = [j for j in jobs if j.state == "queued" and j.device == job.device]
        return sorted(waiting, key=_turn).index(job) + 1

    def run_dir(self, job: Job) -> Path:
        return self.runs_dir / job.run_id

    # Changing --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl  # imported here: POSIX only; the rest of the queue imports anywhere

        self.queue_dir.mkdir(parents=True, exist_ok=True)
        with open(self.queue_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _save(self, job: Job) -> None:
        write_json_atomic(self._path(job.job_id), job.to_dict())

    def gpus(self) -> list[str]:
        """The GPUs jobs are placed on."""
        return self.devices if self.devices is not None else cuda_devices()

    def submit(
        self, config: dict[str, Any], label: str = "", gpus: int = 1, owner: Any = None
    ) -> Job:
        """Validate `config` and queue it; returns the job (state 'queued').

        `gpus` above 1 trains data-parallel on that many GPUs (torchrun); the config's
        device must then be `cuda` or `auto`, and its batch size is the global batch.
        `owner` (a `Person`) is recorded as the job's owner.

        Raises:
            ValueError (or the config's own error type): the config is invalid; nothing is queued.
        """
        self.validate(config)
        self._check_gpus(config, gpus)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        short = uuid.uuid4().hex[:6]
        model = _model_slug(config)
        job = Job(
            job_id=f"{stamp}-{short}",
            run_id=f"{stamp}-{model}-{short}",
            config=dict(config),
            device=queue_key(config.get("device")),
            label=label or _model_label(config),
            gpus=gpus,
            **_owner_fields(owner),
        )
        with self._locked():
            self._save(job)
        return job

    def submit_group(
        self, configs: Sequence[dict[str, Any]], label: str = "", owner: Any = None
    ) -> Job:
        """Queue nets that train in lockstep on the same batches, as one job.

        Raises:
            ValueError (ConfigError): a config is invalid or the nets cannot share batches.
        """
        for config in configs:
            self.validate(config)
        check_group(configs)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        short = uuid.uuid4().hex[:6]
        slugs = [_model_slug(config) for config in configs]
        members = [  # two nets of one name (two custom specs, say) still get two folders
            {"run_id": f"{stamp}-{slug}{f'-{i}' if slugs.count(slug) > 1 else ''}-{short}",
             "config": dict(config)}
            for i, (slug, config) in enumerate(zip(slugs, configs), 1)
        ]  # fmt: skip
        for member in members:
            member["label"] = _model_label(member["config"])
        job = Job(
            job_id=f"{stamp}-{short}",
            run_id=members[0]["run_id"],
            config=members[0]["config"],
            device=queue_key(configs[0].get("device")),
            label=label or " vs ".join(member["label"] for member in members),
            members=members,
            **_owner_fields(owner),
        )
        with self._locked():
            self._save(job)
        return job

    def _check_gpus(self, config: dict[str, Any], gpus: int) -> None:
        """Refuse a data-parallel request this queue cannot place."""
        if gpus == 1:
            return
        have = len(self.gpus())
        if not 2 <= gpus <= have or queue_key(config.get("device")) != "cuda":
            raise ValueError(
                f"gpus: {gpus} needs device cuda or auto and at most the {have} GPU(s) here"
            )
        batch = int(config.get("batch_size") or TrainConfig().batch_size)
        if batch % gpus:
            raise ValueError(
                f"batch_size: {batch} does not split over {gpus} GPUs; pick a multiple"
            )

    def cancel(self, job_id: str) -> None:
        """Ask a job to stop: a queued job is cancelled at once, a running one at its next step."""
        with self._locked():
            job = self.get(job_id)
            if job is None or not job.active:
                return
            if job.state == "queued":
                job.state, job.finished, job.message = (
                    "cancelled",
                    time.time(),
                    "cancelled before it started",
                )
                self._save(job)
                return
            (self.queue_dir / f"{job_id}.cancel").touch()

    def cancel_requested(self, job_id: str) -> bool:
        return (self.queue_dir / f"{job_id}.cancel").exists()

    def update(self, job_id: str, **changes: Any) -> Job | None:
        """Change fields of a job under the lock (used by the worker)."""
        with self._locked():
            job = self.get(job_id)
            if job is None:
                return None
            job = dataclasses.replace(job, **changes)
            self._save(job)
            return job

    # Scheduling ------------------------------------------------------------------------------
    def _reap(self, jobs: list[Job]) -> None:
        """Mark jobs whose worker died without saying so."""
        for job in jobs:
            child = self._children.get(job.job_id)
            if child is not None and child.poll() is not None:
                del self._children[job.job_id]
            if job.state not in ("starting", "running"):
                continue
            alive = (child is not None and child.poll() is None) or (
                child is None and pid_alive(job.pid)
            )
            if not alive:
                job.state, job.finished = "interrupted", time.time()
                job.message = job.message or "the training process stopped without reporting why"
                job.advice = "Start it again; the run folder keeps what it wrote so far."
                self._save(job)

    def _slots(self, job: Job) -> tuple[list[str], int]:
        """The devices `job` may run on, and how many jobs each of them takes at once."""
        candidates = self.gpus() if job.device == "cuda" else [job.device]
        return candidates, self.jobs_per_device if job.device.startswith("cuda") else 1

    def _place(self, job: Job, used: Counter[str]) -> list[str] | None:
        """The devices `job` would start on now, least busy first; None while it must wait."""
        candidates, room = self._slots(job)
        free = sorted((d for d in candidates if used[d] < room), key=lambda d: used[d])
        return free[: job.gpus] if len(free) >= job.gpus else None

    def _reserve(self, job: Job, used: Counter[str]) -> None:
        """Hold the devices a waiting `job` would take first, so that younger jobs cannot
        keep overtaking it (a data-parallel job would otherwise wait for ever while single
        runs take each GPU as it frees)."""
        candidates, room = self._slots(job)
        for device in sorted(candidates, key=lambda d: used[d])[: job.gpus]:
            used[device] = max(used[device], room)

    def pump(self) -> list[Job]:
        """Start queued jobs oldest first (the teacher's before students'), each once its
        devices have a free slot; a job that must wait holds its devices from younger ones.
        Returns the jobs started."""
        started = []
        with self._locked():
            jobs = self.jobs()
            self._reap(jobs)
            used: Counter[str] = Counter()
            for job in jobs:
                if job.state in ("starting", "running"):
                    used.update(job.placed or [job.device])
            for job in sorted(jobs, key=_turn):
                if job.state != "queued":
                    continue
                placed = self._place(job, used)
                if placed is None:
                    self._reserve(job, used)
                    continue
                job.state, job.started, job.placed = "starting", time.time(), placed
                self._save(job)
                child = subprocess.Popen(
                    [*self.worker, str(self._path(job.job_id))],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # outlives the app process that started it
                )
                self._children[job.job_id] = child
                job.pid = child.pid
                self._save(job)
                used.update(placed)
                started.append(job)
        return started


def gpu_choices() -> list[int]:
    """How many GPUs one run may train on (1 .. N) on a machine with two or more; else []."""
    count = len(cuda_devices())
    return list(range(1, count + 1)) if count > 1 else []


class JobRunner:
    """Calls `queue.pump()` every `interval` seconds on a daemon thread (one per app process)."""

    def __init__(self, queue: JobQueue, interval: float = 0.5) -> None:
        self.queue = queue
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resnet-job-runner", daemon=True)
        self.last_error: str = ""

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.queue.pump()
                self.last_error = ""
            except Exception as error:  # noqa: BLE001 - the loop must survive a bad file
                self.last_error = f"{type(error).__name__}: {error}"
            self._stop.wait(self.interval)


def _owner_fields(owner: Any) -> dict[str, str]:
    return {"owner": owner.key, "owner_name": owner.name} if owner is not None else {}


def _turn(job: Job) -> tuple[bool, float]:
    """Queue order: the teacher's (and a laptop's) jobs first, then students', oldest first."""
    return job.owner.startswith("student:"), job.created


def _model_slug(config: dict[str, Any]) -> str:
    """The model's name for a run id: a preset name, "yours" for a student's net, or "custom"
    for a spec."""
    model = config.get("model", "run")
    if config.get("student"):
        return "yours"
    return (model if isinstance(model, str) else "custom").replace("/", "_")[:40]


def _model_label(config: dict[str, Any]) -> str:
    """The model's name for people: a preset name or e.g. 'custom basic [1, 1] residual'."""
    try:
        if isinstance(config.get("model"), dict):  # names a student's net and its twins too
            return TrainConfig.from_dict(config).label()
        return spec_label(resolve_spec(config.get("model", "run")))
    except (SpecError, TypeError, ValueError):
        return _model_slug(config)


def _validate_config(config: dict) -> Any:
    """A bad field or a device this machine lacks raises here, before anything is queued."""
    parsed = TrainConfig.from_dict(config)
    device = resolve_device(parsed.device)  # a device this machine lacks is refused here
    check_resources(parsed, device)  # and so is a run too big for it
    return parsed
