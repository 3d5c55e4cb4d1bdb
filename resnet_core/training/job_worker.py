"""The worker process of the job queue (`resnet_core.training.jobs`): trains one job file.

`JobQueue.pump` starts `python -m resnet_core.training.job_worker run queue/<job_id>.json` in
a session of its own, so the job keeps going if the app that started it goes away. The
worker trains the job (one net, a lockstep group, or, placed on several GPUs, data-parallel
through torchrun, which starts `... job_worker rank queue/<job_id>.json` once per GPU),
checks for the job's cancel file between steps, and writes how the job ended into its job
file, with advice for the Train page when it failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet_core.common.device import resolve_device
from resnet_core.common.errors import failure_advice, first_line
from resnet_core.exercises.sandbox import limit_training
from resnet_core.training.callbacks import Callback
from resnet_core.training.config import TrainConfig
from resnet_core.training.distributed import ranks_from_env, torchrun_command
from resnet_core.training.events import Cancelled, Done, Failed
from resnet_core.training.fitting import fit
from resnet_core.training.jobs import Job, JobQueue
from resnet_core.training.lockstep import fit_group
from resnet_core.training.runs import run_info
from resnet_core.training.trainer import TrainingFailed

__all__ = ["JobRecorder", "main", "run_job", "run_rank"]


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
        _limit_student_code(job)
        if len(job.placed) > 1:
            return _run_data_parallel(queue, job, job_path)
        if job.members:
            return _run_group(queue, job)
        fit(
            TrainConfig.from_dict(_on_placed_device(job, job.config)),
            cancel=_CancelFile(queue, job_id),
            run_dir=queue.run_dir(job),
            callbacks=[JobRecorder(queue, job_id)],
            tune_threads=True,
        )
    except TrainingFailed:
        return 1  # JobRecorder.on_failed recorded it
    except BaseException as error:  # noqa: BLE001 - every failure becomes a message for the UI
        return _fail(queue, job_id, first_line(error))
    return 0


def _visible_devices(placed: Sequence[str]) -> str:
    """CUDA_VISIBLE_DEVICES for the placed GPUs (torch's numbering, within any set already)."""
    indices = [int(device.split(":")[1]) for device in placed]
    already = os.environ.get("CUDA_VISIBLE_DEVICES")
    if already:
        visible = [part.strip() for part in already.split(",")]
        return ",".join(visible[index] for index in indices)
    return ",".join(map(str, indices))


def _run_data_parallel(queue: JobQueue, job: Job, job_path: Path) -> int:
    """Train a job on its placed GPUs: torchrun starts one rank per GPU (`run_rank`), each
    sees its GPUs as cuda:0 .. cuda:N-1; rank 0 records the run and how the job ended."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": _visible_devices(job.placed)}
    command = torchrun_command(
        len(job.placed), ["-m", "resnet_core.training.job_worker", "rank", str(job_path)]
    )
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    after = queue.get(job.job_id)
    if after is not None and after.active:  # rank 0 never said how it ended
        text = done.stderr.decode(errors="replace")
        lines = [line for line in text.splitlines() if line.strip("=-* ")]  # not the rules
        why = lines[-1] if lines else f"torchrun exit code {done.returncode}"
        return _fail(queue, job.job_id, f"a training process stopped: {why}")
    return done.returncode


def run_rank(job_path: str | os.PathLike) -> int:
    """One data-parallel rank of a job (started by torchrun); rank 0 alone records."""
    job_path = Path(job_path)
    queue = JobQueue(job_path.parent.parent)
    job = queue.get(job_path.stem)
    if job is None:
        return 2
    ranks = ranks_from_env()
    main = ranks is None or ranks.main
    try:
        fit(
            TrainConfig.from_dict(job.config),
            cancel=_CancelFile(queue, job.job_id),
            run_dir=queue.run_dir(job) if main else None,
            callbacks=[JobRecorder(queue, job.job_id)] if main else [],
            ranks=ranks,
        )
    except TrainingFailed:
        return 1  # rank 0's JobRecorder recorded it
    except BaseException as error:  # noqa: BLE001 - every failure becomes a message for the UI
        return _fail(queue, job.job_id, first_line(error)) if main else 1
    return 0


def _limit_student_code(job: Job) -> None:
    """A student's exercise file runs in this process: under the exercise's memory limit."""
    configs = [member["config"] for member in job.members] or [job.config]
    if not any(config.get("student") for config in configs):
        return
    device = resolve_device(_on_placed_device(job, configs[0]).get("device") or "auto")
    limit_training(configs, device.type)


def _on_placed_device(job: Job, config: dict[str, Any]) -> dict[str, Any]:
    """The config with the device the queue placed the job on (its run folder records it)."""
    return {**config, "device": job.placed[0]} if job.placed else config


def _run_group(queue: JobQueue, job: Job) -> int:
    """Train a group's nets in lockstep; the job ends cancelled if asked, failed if every
    net failed, else done (naming any net that failed)."""
    cancel = _CancelFile(queue, job.job_id)
    folders = [queue.runs_dir / run_id for run_id in job.run_ids]
    configs = [_on_placed_device(job, member["config"]) for member in job.members]
    results = fit_group(configs, folders, cancel=cancel, tune_threads=True)
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
    """The worker's command line: `run JOB_FILE` (one process) or `rank JOB_FILE` (torchrun)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("run", "rank"):
        sys.stderr.write(
            "usage: python -m resnet_core.training.job_worker run|rank QUEUE/JOB_ID.json\n"
        )
        return 2
    return run_job(args[1]) if args[0] == "run" else run_rank(args[1])


if __name__ == "__main__":
    sys.exit(main())
