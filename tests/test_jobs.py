"""The file-backed job queue: ordering, slots per device, placement on free GPUs, cancel,
crashes, sharing."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest
from app_helpers import QUICK_CPU_RUN

from resnet_core.common.device import queue_key
from resnet_core.common.errors import failure_advice
from resnet_core.training.jobs import JobQueue, JobRunner

# A stand-in worker: marks the job running, ticks until told to stop or `steps` pass.
FAKE_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from resnet_core.training.jobs import JobQueue
    path = Path(sys.argv[1]); queue = JobQueue(path.parent.parent); job_id = path.stem
    job = queue.update(job_id, state="running")
    steps = int(job.config.get("steps", 5))
    if job.config.get("crash"):
        raise SystemExit(3)
    for _ in range(steps):
        if queue.cancel_requested(job_id):
            queue.update(job_id, state="cancelled", finished=time.time()); raise SystemExit(0)
        time.sleep(0.05)
    queue.update(job_id, state="done", finished=time.time())
    """
)


def _ok(config: dict) -> None:
    if config.get("epochs", 1) < 1:
        raise ValueError("epochs: 0 is too small; it must be >= 1")


@pytest.fixture()
def queue(tmp_path):
    return JobQueue(
        tmp_path, worker=[sys.executable, "-c", FAKE_WORKER], validate=_ok, devices=["cuda:0"]
    )


def _gpu_queue(tmp_path, gpus: int, per_device: int) -> JobQueue:
    """A queue that believes it has `gpus` GPUs (the fake worker never touches them)."""
    devices = [f"cuda:{index}" for index in range(gpus)]
    worker = [sys.executable, "-c", FAKE_WORKER]
    return JobQueue(tmp_path, worker, _ok, devices=devices, jobs_per_device=per_device)


def _stop_all(queue: JobQueue) -> None:
    for job in queue.active():
        queue.cancel(job.job_id)
    for job in queue.jobs():
        _wait(queue, job.job_id, ("cancelled", "done"))


def _wait(queue: JobQueue, job_id: str, states: tuple[str, ...], timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        queue.pump()
        job = queue.get(job_id)
        if job.state in states:
            return job.state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stayed {queue.get(job_id).state}")


def test_bad_config_is_refused_and_nothing_queued(queue):
    with pytest.raises(ValueError, match="epochs"):
        queue.submit({"model": "resnet20", "epochs": 0, "device": "cpu"})
    assert queue.jobs() == []


def test_one_job_per_device_others_wait_in_order(queue):
    first = queue.submit({"model": "a", "device": "cpu", "steps": 40})
    second = queue.submit({"model": "b", "device": "cpu", "steps": 1})
    third = queue.submit({"model": "c", "device": "cpu", "steps": 1})
    assert queue.run_dir(first).parent == queue.runs_dir
    queue.pump()
    assert queue.get(first.job_id).state in ("starting", "running")
    assert queue.get(second.job_id).state == "queued"
    assert queue.position(second.job_id) == 1 and queue.position(third.job_id) == 2
    assert queue.position(first.job_id) is None
    assert _wait(queue, first.job_id, ("done",)) == "done"
    assert _wait(queue, third.job_id, ("done",)) == "done"
    assert queue.get(second.job_id).state == "done"
    assert queue.get(second.job_id).started <= queue.get(third.job_id).started


def test_different_devices_run_together(queue):
    cpu = queue.submit({"model": "a", "device": "cpu", "steps": 40})
    gpu = queue.submit({"model": "b", "device": "cuda", "steps": 40})
    assert gpu.device == "cuda"
    started = queue.pump()
    assert {job.job_id for job in started} == {cpu.job_id, gpu.job_id}
    assert queue.get(cpu.job_id).placed == ["cpu"] and queue.get(gpu.job_id).placed == ["cuda:0"]
    for job in (cpu, gpu):
        queue.cancel(job.job_id)
        assert _wait(queue, job.job_id, ("cancelled", "done")) == "cancelled"


def test_cancel_queued_and_running(queue):
    running = queue.submit({"model": "a", "device": "cpu", "steps": 400})
    waiting = queue.submit({"model": "b", "device": "cpu"})
    queue.pump()
    queue.cancel(waiting.job_id)
    assert queue.get(waiting.job_id).state == "cancelled"
    _wait(queue, running.job_id, ("running",))
    queue.cancel(running.job_id)
    assert _wait(queue, running.job_id, ("cancelled",)) == "cancelled"


def test_crashed_worker_is_marked_interrupted(queue):
    job = queue.submit({"model": "a", "device": "cpu", "crash": True})
    assert _wait(queue, job.job_id, ("interrupted",)) == "interrupted"
    assert "stopped" in queue.get(job.job_id).message


def test_another_process_sees_the_same_queue(queue, tmp_path):
    job = queue.submit({"model": "a", "device": "cpu", "steps": 1}, label="shared")
    other = JobQueue(tmp_path)
    assert [j.label for j in other.jobs()] == ["shared"]
    assert other.position(job.job_id) == 1


def test_runner_thread_drives_the_queue(queue):
    runner = JobRunner(queue, interval=0.05).start()
    try:
        job = queue.submit({"model": "a", "device": "cpu", "steps": 1})
        deadline = time.time() + 30
        while queue.get(job.job_id).state != "done" and time.time() < deadline:
            time.sleep(0.05)
        assert queue.get(job.job_id).state == "done"
        assert runner.last_error == ""
    finally:
        runner.stop()


def test_three_gpus_two_slots_each_run_six_jobs_the_seventh_waits(tmp_path):
    queue = _gpu_queue(tmp_path, gpus=3, per_device=2)
    jobs = [queue.submit({"model": f"m{i}", "device": "cuda", "steps": 400}) for i in range(7)]
    started = queue.pump()
    assert [job.job_id for job in started] == [job.job_id for job in jobs[:6]]
    placed = [queue.get(job.job_id).placed for job in jobs[:6]]
    assert sorted(device for devices in placed for device in devices) == [
        "cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:2", "cuda:2"
    ]  # fmt: skip
    assert placed[:3] == [["cuda:0"], ["cuda:1"], ["cuda:2"]]  # the least busy GPU first
    assert queue.get(jobs[6].job_id).state == "queued" and queue.pump() == []
    queue.cancel(jobs[1].job_id)  # frees a slot on cuda:1
    assert _wait(queue, jobs[6].job_id, ("starting", "running")) in ("starting", "running")
    assert queue.get(jobs[6].job_id).placed == ["cuda:1"]
    _stop_all(queue)


def test_a_job_pinned_to_a_gpu_waits_for_that_gpu(tmp_path):
    queue = _gpu_queue(tmp_path, gpus=2, per_device=1)
    busy = queue.submit({"model": "a", "device": "cuda:1", "steps": 400})
    pinned = queue.submit({"model": "b", "device": "cuda:1", "steps": 1})
    anywhere = queue.submit({"model": "c", "device": "cuda", "steps": 400})
    assert pinned.device == "cuda:1"
    assert [job.job_id for job in queue.pump()] == [busy.job_id, anywhere.job_id]
    assert queue.get(anywhere.job_id).placed == ["cuda:0"]
    assert queue.get(pinned.job_id).state == "queued"  # older than `anywhere`, but cuda:1 is busy
    queue.cancel(busy.job_id)
    assert _wait(queue, pinned.job_id, ("done",)) == "done"
    assert queue.get(pinned.job_id).placed == ["cuda:1"]
    _stop_all(queue)


def test_a_waiting_data_parallel_job_is_not_overtaken(tmp_path):
    """A job on both GPUs waits for one of them; a younger single-GPU job waits behind it
    instead of taking the free GPU, so the wide job starts as soon as the busy GPU frees."""
    queue = _gpu_queue(tmp_path, gpus=2, per_device=1)
    busy = queue.submit({"model": "a", "device": "cuda:0", "steps": 400})
    wide = queue.submit({"model": "b", "device": "cuda", "batch_size": 128, "steps": 400}, gpus=2)
    single = queue.submit({"model": "c", "device": "cuda", "steps": 400})
    assert [job.job_id for job in queue.pump()] == [busy.job_id]
    assert queue.get(single.job_id).state == "queued"
    queue.cancel(busy.job_id)
    assert _wait(queue, wide.job_id, ("starting", "running")) in ("starting", "running")
    assert sorted(queue.get(wide.job_id).placed) == ["cuda:0", "cuda:1"]
    assert queue.get(single.job_id).state == "queued"
    queue.cancel(wide.job_id)
    assert _wait(queue, single.job_id, ("starting", "running")) in ("starting", "running")
    _stop_all(queue)


def test_a_data_parallel_job_takes_a_slot_on_several_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_JOBS_PER_DEVICE", "2")
    queue = _gpu_queue(tmp_path, gpus=3, per_device=None)
    assert queue.jobs_per_device == 2
    with pytest.raises(ValueError, match="multiple"):
        queue.submit({"model": "a", "device": "cuda", "batch_size": 129}, gpus=2)
    with pytest.raises(ValueError, match="at most the 3 GPU"):
        queue.submit({"model": "a", "device": "cuda", "batch_size": 128}, gpus=4)
    with pytest.raises(ValueError, match="device cuda or auto"):
        queue.submit({"model": "a", "device": "cuda:1", "batch_size": 128}, gpus=2)
    single = queue.submit({"model": "a", "device": "cuda:0", "steps": 400})
    wide = queue.submit({"model": "b", "device": "cuda", "batch_size": 96, "steps": 400}, gpus=3)
    assert len(queue.pump()) == 2
    assert sorted(queue.get(wide.job_id).placed) == ["cuda:0", "cuda:1", "cuda:2"]
    monkeypatch.setenv("RESNET_EXPLORER_JOBS_PER_DEVICE", "none")
    with pytest.raises(ValueError, match="whole number"):
        JobQueue(tmp_path)
    assert queue.get(single.job_id).placed == ["cuda:0"]
    _stop_all(queue)


def test_queue_key_and_advice():
    assert queue_key("cpu") == "cpu" and queue_key("cuda") == "cuda"
    assert queue_key("auto") in ("cpu", "cuda")
    assert "batch size" in failure_advice("CUDA out of memory. Tried to allocate 2 GiB")
    assert "synthetic" in failure_advice("CIFAR-10 not found: looked for data/train")


def test_real_training_job_writes_its_run(tmp_path):
    """The default worker runs resnet_core.training.fitting.fit in its own process and records the run."""
    queue = JobQueue(tmp_path)
    job = queue.submit(dict(QUICK_CPU_RUN))
    assert _wait(queue, job.job_id, ("done", "failed", "interrupted"), timeout=120) == "done", (
        queue.get(job.job_id)
    )
    from resnet_core.training.runs import read_metrics, run_info

    info = run_info(queue.run_dir(job))
    assert info.state == "done" and info.synthetic and info.epoch == 1
    assert queue.get(job.job_id).placed == ["cpu"] and info.device.startswith("cpu")
    assert [e["event"] for e in read_metrics(queue.run_dir(job))][-1] == "done"


def test_real_job_with_bad_setting_fails_with_advice(tmp_path):
    queue = JobQueue(tmp_path, validate=lambda config: None)  # let it reach the worker
    job = queue.submit(
        {
            "model": "resnet20",
            "dataset": "cifar10",
            "data_dir": str(tmp_path / "nothing"),
            "device": "cpu",
        }
    )
    assert _wait(queue, job.job_id, ("failed", "interrupted"), timeout=120) == "failed"
    failed = queue.get(job.job_id)
    assert "CIFAR-10 not found" in failed.message and "synthetic" in failed.advice


def test_default_validation_refuses_a_missing_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="not available"):
        JobQueue(tmp_path).submit({"model": "resnet20", "device": "cuda"})
