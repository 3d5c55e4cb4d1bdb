"""Lockstep groups: identical batches for every member, steps in turn, one run folder each,
one cancel for all, and a member that breaks leaves the others running."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import torch
from app_helpers import QUICK_CPU_RUN, app_test, no_exceptions

from resnet_core.common.errors import ConfigError
from resnet_core.training.callbacks import Callback
from resnet_core.training.choices import READY_CHOICES
from resnet_core.training.config import TrainConfig
from resnet_core.training.events import Step
from resnet_core.training.experiments import shipped_root
from resnet_core.training.jobs import Job, JobQueue
from resnet_core.training.lockstep import LockstepGroup, check_group, fit_group
from resnet_core.training.runs import is_run_folder, load_run, read_events, run_info
from resnet_core.training.trainer import Trainer
from resnet_core.views.charts import PLAIN_COLOUR, RESIDUAL_COLOUR
from resnet_core.views.lockstep import barely_trained_sentence, lockstep_frames

# 2 epochs of 2 steps each on the synthetic set
PAIR = [
    {**QUICK_CPU_RUN, "model": "plain20", "epochs": 2, "subset": 100},
    {**QUICK_CPU_RUN, "model": "resnet20", "epochs": 2, "subset": 100},
]


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def test_members_see_identical_batches_in_turn():
    group = LockstepGroup(PAIR).setup()
    seen: list[tuple[int, str, str]] = []
    for index, member in enumerate(group.members):
        step = member.train_step

        def recorded(images, labels, index=index, step=step):
            seen.append((index, _digest(images), _digest(labels)))
            return step(images, labels)

        member.train_step = recorded
    results = group.fit()
    assert [r.state for r in results] == ["done", "done"]
    assert [index for index, *_ in seen] == [0, 1] * (len(seen) // 2)  # one step of each in turn
    plain = [tuple(batch) for index, *batch in seen if index == 0]
    residual = [tuple(batch) for index, *batch in seen if index == 1]
    assert len(plain) == len(residual) == 2 * group.members[0].state.steps_per_epoch
    assert plain == residual
    assert len({images for images, _ in plain}) == len(plain)  # not one batch repeated
    # the same batches a single run with this seed sees in its first epoch
    alone = Trainer(PAIR[1]).setup()
    alone.state.train_loader.set_epoch(1)
    first = [(_digest(x), _digest(y)) for x, y in alone.state.train_loader]
    assert plain[: len(first)] == first


def test_each_member_writes_a_valid_run_folder(tmp_path):
    folders = [tmp_path / "plain", tmp_path / "residual"]
    order: list[tuple[int, str]] = []
    results = fit_group(PAIR, folders, on_event=lambda i, e: order.append((i, e["event"])))
    assert [r.state for r in results] == ["done", "done"]
    assert order[:2] == [(0, "start"), (1, "start")]  # both start before either steps
    for folder, config in zip(folders, PAIR):
        assert is_run_folder(folder)
        info = run_info(folder)
        assert info.state == "done" and info.model == config["model"] and info.epoch == 2
        model, _ = load_run(folder, which="best")
        assert model.spec.residual == (config["model"] == "resnet20")
    # the curves advance together: step events alternate between the members
    steps = [index for index, kind in order if kind == "step"]
    assert steps == [0, 1] * 4


class _CancelAfter:
    def __init__(self, group: LockstepGroup, steps: int) -> None:
        self.group, self.steps = group, steps

    def is_set(self) -> bool:
        return self.group.members[-1].step >= self.steps


def test_one_cancel_stops_every_member(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    group = LockstepGroup(PAIR, folders)
    group.members[0].cancel = group.members[1].cancel = _CancelAfter(group, 3)
    results = group.fit()
    assert [r.state for r in results] == ["cancelled", "cancelled"]
    assert [m.step for m in group.members] == [3, 3]
    assert [run_info(f).state for f in folders] == ["cancelled", "cancelled"]


class _BreakFirstMember(Callback):
    def on_step(self, trainer, event: Step) -> None:
        if trainer.config.model == "plain20" and event.step == 3:
            raise FloatingPointError("loss became nan at step 3")


def test_a_broken_member_fails_alone(tmp_path):
    folders = [tmp_path / "plain", tmp_path / "residual"]
    results = LockstepGroup(PAIR, folders, callbacks=[_BreakFirstMember()]).fit()
    assert [r.state for r in results] == ["failed", "done"]
    assert results[0].steps == 3 and results[1].steps == 4
    assert run_info(folders[0]).state == "failed"
    assert "nan" in run_info(folders[0]).message
    kinds = [event.kind for event in read_events(folders[1])]
    assert kinds[0] == "start" and kinds[-1] == "done"


@pytest.mark.parametrize(
    ("configs", "words"),
    [
        (PAIR[:1], "2 to 4"),
        (PAIR * 3, "2 to 4"),
        ([PAIR[0], {**PAIR[1], "batch_size": 25}], "batch_size"),
        ([PAIR[0], {**PAIR[1], "seed": 1}], "seed"),
        ([PAIR[0], {**PAIR[1], "epochs": 3}], "epochs"),
    ],
)
def test_groups_that_cannot_share_batches_are_refused(configs, words):
    with pytest.raises(ConfigError, match=words):
        check_group(configs)


def test_members_may_differ_in_their_optimizer():
    configs = [PAIR[0], {**PAIR[1], "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}]
    assert [c.optimizer for c in check_group(configs)] == ["sgd", "adam"]


def _wait_for(queue: JobQueue, job_id: str, states: tuple[str, ...], timeout: float = 180) -> Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        queue.pump()
        job = queue.get(job_id)
        if job.state in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {queue.get(job_id).state}")


def test_a_group_is_one_queue_entry_run_by_one_worker(tmp_path):
    queue = JobQueue(tmp_path)
    job = queue.submit_group(PAIR)
    assert job.label == "plain20 vs resnet20" and len(job.run_ids) == 2
    assert [j.job_id for j in queue.jobs()] == [job.job_id]
    finished = _wait_for(queue, job.job_id, ("done", "failed", "interrupted"))
    assert finished.state == "done", finished
    for run_id, config in zip(job.run_ids, PAIR):
        info = run_info(queue.runs_dir / run_id)
        assert info.state == "done" and info.model == config["model"]
    again = JobQueue(tmp_path).get(job.job_id)  # another process reads the same group
    assert again.run_ids == job.run_ids and again.members == job.members


def test_cancelling_a_group_job_stops_every_member(tmp_path):
    queue = JobQueue(tmp_path)
    job = queue.submit_group([{**config, "epochs": 50} for config in PAIR])
    _wait_for(queue, job.job_id, ("running",))
    deadline = time.time() + 120
    while time.time() < deadline and not all(
        (queue.runs_dir / run_id / "status.json").exists() for run_id in job.run_ids
    ):
        time.sleep(0.1)
    queue.cancel(job.job_id)
    assert _wait_for(queue, job.job_id, ("cancelled", "done", "failed")).state == "cancelled"
    assert [run_info(queue.runs_dir / r).state for r in job.run_ids] == ["cancelled"] * 2


def test_a_group_that_cannot_share_batches_is_not_queued(tmp_path):
    queue = JobQueue(tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        queue.submit_group([PAIR[0], {**PAIR[1], "batch_size": 25}])
    assert queue.jobs() == []


def test_train_page_overlays_every_member_of_a_group(tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    queue = JobQueue(checkpoints)
    job = queue.submit_group([{**config, "grad_norm_every": 1} for config in PAIR])
    fit_group([m["config"] for m in job.members], [queue.runs_dir / r for r in job.run_ids])
    queue.update(job.job_id, state="done", finished=time.time())
    at = app_test()
    at.run()
    at.switch_page("pages/train.py").run()
    assert no_exceptions(at) == []
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    titles = sorted(spec.get("title") for spec in specs)
    assert titles == [
        "Gradient norm per layer over training (log colour, shared scale)",
        "Gradient: first layer / last layer",
        "Test accuracy",
        "Training accuracy",
        "Training loss",
    ]
    heat_map = next(spec for spec in specs if "facet" in spec)
    assert heat_map["facet"]["column"]["sort"] == ["plain20", "resnet20"]  # side by side
    for spec in (s for s in specs if "facet" not in s):  # plain red, residual blue on each
        scale = spec["encoding"]["color"]["scale"]
        assert scale["domain"] == ["plain20", "resnet20"]
        assert scale["range"][:2] == [PLAIN_COLOUR, RESIDUAL_COLOUR]
    captions = " ".join(c.value for c in at.caption)
    assert "for plain20 and" in captions and "for resnet20" in captions
    assert sum("reached" in s.value for s in at.success) == 2  # one sentence per net


@pytest.mark.parametrize("name", [name for name, nets in READY_CHOICES.items() if len(nets) > 1])
def test_every_ready_made_group_can_share_batches(name):
    nets = [{**TrainConfig().to_dict(), **overrides} for overrides in READY_CHOICES[name]]
    assert [config.model for config in check_group(nets)] == [n["model"] for n in nets]


def test_a_shipped_pair_where_one_net_barely_trained_says_so():
    """grad_flow56's plain56 reached 22.6 % test accuracy against resnet56's 45.3 %: the
    gradient map under it is that of a net that hardly learned, and the page says so with the
    numbers; grad_flow's pair trained comparably and gets no warning."""

    def frames(folder):
        root = shipped_root() / folder
        return lockstep_frames(
            {p.name: read_events(p) for p in sorted(root.iterdir()) if p.is_dir()}
        )

    text = barely_trained_sentence(frames("grad_flow56"))
    assert text.startswith("plain56 reached 22.6 % test accuracy, against 45.3 % for resnet56")
    assert "barely trained" in text
    assert barely_trained_sentence(frames("grad_flow")) == ""


def test_runs_page_warns_under_the_gradient_map_of_a_net_that_barely_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page("pages/runs.py").run()
    shipped = next(o for o in at.selectbox(key="runs_collection").options if "plain-56" in o)
    at.selectbox(key="runs_collection").set_value(shipped).run()
    assert no_exceptions(at) == []
    warnings = " ".join(w.value for w in at.warning)
    assert "plain56 reached 22.6 % test accuracy" in warnings and "barely trained" in warnings
