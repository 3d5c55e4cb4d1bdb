"""Precision "auto": what it picks on each kind of device, and that a run records the choice
and says why."""

from __future__ import annotations

import json
import math

import pytest
import torch
from app_helpers import QUICK_CPU_RUN

from resnet_core.training import parts
from resnet_core.training.config import TrainConfig
from resnet_core.training.events import Note
from resnet_core.training.fitting import fit
from resnet_core.training.runs import read_events

AUTO_RUN = {**QUICK_CPU_RUN, "model": {"depths": [1, 1, 1], "widths": [8, 16, 32]}}
AUTO_RUN.pop("precision")


def test_auto_is_the_default_and_a_listed_choice():
    assert TrainConfig().precision == "auto"
    assert TrainConfig(precision="fp32").precision == "fp32"


@pytest.mark.parametrize(("speedup", "chosen"), [(0.19, "fp32"), (1.1, "fp32"), (1.7, "bf16")])
def test_a_cpu_takes_bf16_only_where_the_probe_finds_it_faster(monkeypatch, speedup, chosen):
    monkeypatch.setattr(parts, "cpu_bf16_speedup", lambda: speedup)
    precision, why = parts.auto_precision(torch.device("cpu"))
    assert precision == chosen
    assert f"{speedup:.2f}x" in why


def test_the_probe_measures_without_touching_the_random_state_or_the_threads():
    before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    parts.cpu_bf16_speedup.cache_clear()
    speedup = parts.cpu_bf16_speedup()
    assert math.isfinite(speedup) and speedup > 0
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_num_threads() == threads
    assert parts.cpu_bf16_speedup() == speedup  # measured once per process


def test_other_work_starting_halfway_through_the_probe_slows_both_precisions_alike():
    """A machine that gets busy while the probe runs (a classmate's job starting) must not
    make the precision timed last look slower: the two are timed in turn."""
    calls = []

    def once(kind: str) -> float:
        calls.append(kind)
        busy = len(calls) > 8  # the other work starts after the first eight timings
        return (1.0 if kind == "fp32" else 0.5) * (3.0 if busy else 1.0)

    best = parts.best_in_turn(once, ("fp32", "bf16"))
    assert best == {"fp32": 1.0, "bf16": 0.5}
    assert calls[2:6] == ["fp32", "bf16", "fp32", "bf16"]


@pytest.mark.parametrize(("speedup", "chosen"), [(0.5, "fp32"), (2.0, "bf16")])
def test_a_run_records_what_auto_chose_and_says_why(tmp_path, monkeypatch, speedup, chosen):
    monkeypatch.setattr(parts, "cpu_bf16_speedup", lambda: speedup)
    result = fit(AUTO_RUN, run_dir=tmp_path / "run")
    assert result.state == "done"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["precision"] == chosen
    notes = [e.message for e in read_events(tmp_path / "run") if isinstance(e, Note)]
    assert notes == [
        f"precision auto chose {chosen}: bf16 autocast ran a probe of three conv layers at "
        f"{speedup:.2f}x fp32's speed here"
    ]


def test_a_chosen_precision_is_kept_and_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(parts, "cpu_bf16_speedup", lambda: 2.0)
    fit({**AUTO_RUN, "precision": "fp32"}, run_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "fp32"
    assert not [e for e in read_events(tmp_path / "run") if isinstance(e, Note)]


@pytest.mark.parametrize(
    ("capability", "chosen"), [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]
)
def test_a_gpu_takes_bf16_where_it_computes_in_it(monkeypatch, capability, chosen):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert parts.auto_precision(torch.device("cuda", 0))[0] == chosen
    assert parts.auto_precision(torch.device("mps"))[0] == "fp32"


def test_data_parallel_ranks_take_rank_0s_choice(monkeypatch):
    from resnet_core.training import trainer as trainer_module
    from resnet_core.training.config import PRECISIONS
    from resnet_core.training.distributed import Ranks

    monkeypatch.setattr(parts, "cpu_bf16_speedup", lambda: 0.5)  # this rank alone: fp32
    sent = []

    def rank_0_says_bf16(values, device):
        sent.append(list(values))
        return [float(PRECISIONS.index("bf16"))]

    monkeypatch.setattr(trainer_module, "broadcast_floats", rank_0_says_bf16)
    trainer = trainer_module.Trainer(AUTO_RUN, ranks=Ranks(rank=1, world_size=2, local_rank=1))
    assert trainer._resolve_precision(torch.device("cpu")).precision == "bf16"
    assert sent == [[PRECISIONS.index("fp32")]]  # what this rank would have chosen
