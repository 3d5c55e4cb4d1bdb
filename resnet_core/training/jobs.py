"""A training job queue kept in files, so runs outlive page reloads and app restarts.

Layout under the checkpoints root (`$RESNET_EXPLORER_CHECKPOINTS`, default ./checkpoints)::

    queue/<job_id>.json     one job: config, state, device, run_id, pid, message
    queue/<job_id>.cancel   present once someone asked the job to stop
    queue/.lock             held (flock) while the queue is changed
    runs/<run_id>/          what `resnet_core.training.trainer.fit` writes (metrics.jsonl, status.json, ...)

`JobQueue.submit` validates a config and writes a queued job. `JobQueue.pump` starts the
oldest queued job on every device that has none running, as a separate process
(`python -m resnet_core.training.jobs run queue/<job_id>.json`) in its own session, so the job keeps
going if the app that started it goes away. `JobRunner` calls `pump` from a daemon thread.
Any number of app processes may share one root: the lock makes starting a job atomic.
The worker process checks for the cancel file between steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_core.common.device import queue_key, resolve_device
from resnet_core.common.env import checkpoints_root
from resnet_core.common.errors import failure_advice, first_line
from resnet_core.common.files import pid_alive, write_json_atomic
from resnet_core.common.records import checked_fields
from resnet_core.nets.spec import SpecError, resolve_spec, spec_label
from resnet_core.training.callbacks import Callback
from resnet_core.training.config import TrainConfig
from resnet_core.training.events import Cancelled, Done, Failed
from resnet_core.training.group import check_group, fit_group
from resnet_core.training.runs import run_info, validate_run_id
from resnet_core.training.seeds import SEED_NOTES, SEED_RECIPES
from resnet_core.training.trainer import TrainingFailed, check_resources, fit

__all__ = [
    "ACTIVE",
    "FINISHED",
    "Job",
    "JobQueue",
    "JobRunner",
    "RECIPES",
    "RECIPE_NOTES",
]

ACTIVE = ("queued", "starting", "running")
FINISHED = ("done", "failed", "cancelled", "interrupted")


# Ready-made choices for the Train page: name -> the nets it trains (TrainConfig field
# overrides); more than one net train together as a lockstep group.
_SIDE_BY_SIDE = {"epochs": 2, "subset": 10_000, "batch_size": 128, "grad_norm_every": 5}
RECIPES: dict[str, list[dict[str, Any]]] = {
    "Quick CPU demo: ResNet-20 on 10,000 images, 1 epoch": [
        {"model": "resnet20", "epochs": 1, "subset": 10_000, "batch_size": 128},
    ],
    "plain-20 vs ResNet-20 side by side": [
        {"model": "plain20", **_SIDE_BY_SIDE},
        {"model": "resnet20", **_SIDE_BY_SIDE},
    ],
    "GPU: ResNet-18, 30 epochs (aiming at 94%)": [
        {
            "model": "resnet18",
            "epochs": 30,
            "batch_size": 512,
            "device": "cuda",
            "precision": "bf16",
            "channels_last": True,
            "label_smoothing": 0.1,
        },
    ],
    **SEED_RECIPES,
}
# What a ready-made choice reproduces, for the ones that need saying.
RECIPE_NOTES: dict[str, str] = dict(SEED_NOTES)


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
        for member in job.members:
            if not isinstance(member, dict) or not isinstance(member.get("config"), dict):
                raise ValueError("queue file: a group member needs a config")
        for run_id in job.run_ids:
            validate_run_id(run_id)  # the worker writes into runs/<run_id>
        return job


class JobQueue:
    """Jobs as files under `root/queue`, runs under `root/runs`.

    Args:
        root: checkpoints folder (default `checkpoints_root()`).
        worker: command prefix that runs one job file (default: this module's `run`).
        validate: called with a config dict on submit; raises on a bad config. Default:
            `TrainConfig.from_dict`.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        worker: Sequence[str] | None = None,
        validate: Callable[[dict], Any] | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else checkpoints_root()
        self.queue_dir = self.root / "queue"
        self.runs_dir = self.root / "runs"
        self.worker = (
            list(worker) if worker else [sys.executable, "-m", "resnet_core.training.jobs", "run"]
        )
        self.validate = validate or _validate_config
        self._children: dict[str, subprocess.Popen] = {}

    # Reading ---------------------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        return self.queue_dir / f"{job_id}.json"

    def get(self, job_id: str) -> Job | None:
        try:
            return Job.from_dict(json.loads(self._path(job_id).read_text()))
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
        return waiting.index(job) + 1

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

    def submit(self, config: dict[str, Any], label: str = "") -> Job:
        """Validate `config` and queue it; returns the job (state 'queued').

        Raises:
            ValueError (or the config's own error type): the config is invalid; nothing is queued.
        """
        self.validate(config)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        short = uuid.uuid4().hex[:6]
        model = _model_slug(config)
        job = Job(
            job_id=f"{stamp}-{short}",
            run_id=f"{stamp}-{model}-{short}",
            config=dict(config),
            device=queue_key(config.get("device")),
            label=label or _model_label(config),
        )
        with self._locked():
            self._save(job)
        return job

    def submit_group(self, configs: Sequence[dict[str, Any]], label: str = "") -> Job:
        """Queue nets that train in lockstep on the same batches, as one job.

        Raises:
            ValueError (ConfigError): a config is invalid or the nets cannot share batches.
        """
        for config in configs:
            self.validate(config)
        check_group(configs)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        short = uuid.uuid4().hex[:6]
        members = [
            {"run_id": f"{stamp}-{_model_slug(config)}-{short}", "config": dict(config)}
            for config in configs
        ]
        for member in members:
            member["label"] = _model_label(member["config"])
        job = Job(
            job_id=f"{stamp}-{short}",
            run_id=members[0]["run_id"],
            config=members[0]["config"],
            device=queue_key(configs[0].get("device")),
            label=label or " vs ".join(member["label"] for member in members),
            members=members,
        )
        with self._locked():
            self._save(job)
        return job

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

    def forget(self, job_id: str) -> None:
        """Remove a finished job's file (its run folder stays)."""
        with self._locked():
            job = self.get(job_id)
            if job is not None and not job.active:
                self._path(job_id).unlink(missing_ok=True)
                (self.queue_dir / f"{job_id}.cancel").unlink(missing_ok=True)

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

    def pump(self) -> list[Job]:
        """Start the oldest queued job on each idle device; returns the jobs started."""
        started = []
        with self._locked():
            jobs = self.jobs()
            self._reap(jobs)
            busy = {job.device for job in jobs if job.state in ("starting", "running")}
            for job in jobs:
                if job.state != "queued" or job.device in busy:
                    continue
                job.state, job.started = "starting", time.time()
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
                busy.add(job.device)
                started.append(job)
        return started


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


def _model_slug(config: dict[str, Any]) -> str:
    """The model's name for a run id: a preset name, or "custom" for a spec."""
    model = config.get("model", "run")
    return (model if isinstance(model, str) else "custom").replace("/", "_")[:40]


def _model_label(config: dict[str, Any]) -> str:
    """The model's name for people: a preset name or e.g. 'custom basic [1, 1] residual'."""
    try:
        return spec_label(resolve_spec(config.get("model", "run")))
    except (SpecError, TypeError):
        return _model_slug(config)


# The worker process ------------------------------------------------------------------------
def _validate_config(config: dict) -> Any:
    """A bad field or a device this machine lacks raises here, before anything is queued."""
    parsed = TrainConfig.from_dict(config)
    device = resolve_device(parsed.device)  # a device this machine lacks is refused here
    check_resources(parsed, device)  # and so is a run too big for it
    return parsed


class _CancelFile:
    """What the trainer polls before every step: set once the job's cancel file exists."""

    def __init__(self, queue: JobQueue, job_id: str) -> None:
        self.queue, self.job_id = queue, job_id

    def is_set(self) -> bool:
        return self.queue.cancel_requested(self.job_id)


def _fail(queue: JobQueue, job_id: str, message: str) -> int:
    """Record a failed job with advice for the UI; the worker's exit code."""
    queue.update(
        job_id,
        state="failed",
        finished=time.time(),
        message=message,
        advice=failure_advice(message),
    )
    return 1


class JobRecorder(Callback):
    """The worker's trainer callback: writes how the run ended into the job file."""

    def __init__(self, queue: JobQueue, job_id: str) -> None:
        self.queue, self.job_id = queue, job_id

    def on_done(self, trainer: Any, event: Done) -> None:
        # a cancel that came after the last step still counts: the user asked for it
        cancelled = self.queue.cancel_requested(self.job_id)
        self._finish("cancelled" if cancelled else "done")

    def on_cancelled(self, trainer: Any, event: Cancelled) -> None:
        self._finish("cancelled")

    def on_failed(self, trainer: Any, event: Failed) -> None:
        _fail(self.queue, self.job_id, event.message)

    def _finish(self, state: str) -> None:
        self.queue.update(self.job_id, state=state, finished=time.time())


def run_job(job_path: str | os.PathLike) -> int:
    """Run one job file to the end (the body of the worker process); returns an exit code."""
    job_path = Path(job_path)
    queue = JobQueue(job_path.parent.parent)
    job_id = job_path.stem
    job = queue.update(job_id, state="running", pid=os.getpid(), started=time.time())
    if job is None:
        return 2
    try:
        if job.members:
            return _run_group(queue, job)
        fit(
            TrainConfig.from_dict(job.config),
            cancel=_CancelFile(queue, job_id),
            run_dir=queue.run_dir(job),
            callbacks=[JobRecorder(queue, job_id)],
        )
    except TrainingFailed:
        return 1  # JobRecorder.on_failed recorded it
    except BaseException as error:  # noqa: BLE001 - every failure becomes a message for the UI
        return _fail(queue, job_id, first_line(error))
    return 0


def _run_group(queue: JobQueue, job: Job) -> int:
    """Train a group's nets in lockstep; the job ends cancelled if asked, failed if every
    net failed, else done (naming any net that failed)."""
    cancel = _CancelFile(queue, job.job_id)
    folders = [queue.runs_dir / run_id for run_id in job.run_ids]
    results = fit_group([member["config"] for member in job.members], folders, cancel=cancel)
    failures = [
        f"{member['label']}: {run_info(folder).message or 'failed'}"
        for member, folder, result in zip(job.members, folders, results, strict=True)
        if result.state == "failed"
    ]
    if cancel.is_set() or any(result.state == "cancelled" for result in results):
        queue.update(job.job_id, state="cancelled", finished=time.time())
        return 0
    if len(failures) == len(results):
        return _fail(queue, job.job_id, "; ".join(failures))
    queue.update(job.job_id, state="done", finished=time.time(), message="; ".join(failures))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "run":
        sys.stderr.write("usage: python -m resnet_core.training.jobs run QUEUE/JOB_ID.json\n")
        return 2
    return run_job(args[1])


if __name__ == "__main__":
    sys.exit(main())
