"""Inputs that ask for unbounded memory are refused before anything is allocated, with the
estimate and the limit in the message, the same in the CLI, the trainer and the queue."""

from __future__ import annotations

import json

import pytest
import torch

from resnet_core import build_model
from resnet_core.cli.main import main
from resnet_core.common.errors import ConfigError
from resnet_core.nets.size import estimate_activation_values
from resnet_core.nets.spec import resolve_spec
from resnet_core.training.fitting import fit
from resnet_core.training.jobs import JobQueue

HUGE_SPEC = {
    "depths": [256] * 8,
    "widths": [8192] * 8,
    "stem": "imagenet",
    "shortcut": "projection",
}


def _saved_activation_values(name: str, side: int) -> float:
    """Per image: activation values autograd keeps for backward (weights left out)."""
    model = build_model(name).train()
    seen = {(p.data_ptr(), p.numel()) for p in model.parameters()}
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (tensor.data_ptr(), tensor.numel())
        if key not in seen and tensor.dim() == 4 and tensor.is_floating_point():
            seen.add(key)
            total += tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(2, 3, side, side)).sum()
    return total / 2


@pytest.mark.parametrize(
    "name, side",
    [
        ("resnet20", 32),
        ("plain56", 32),
        ("resnet18", 32),
        ("simple_cnn", 32),
        ("small_cnn", 32),
        ("resnet50-imagenet", 64),
    ],
)
def test_activation_estimate_is_close_to_what_autograd_keeps(name, side):
    ratio = estimate_activation_values(resolve_spec(name), side) / _saved_activation_values(
        name, side
    )
    assert 0.5 < ratio < 2.5, ratio


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("command", ["trace", "gradients"])
def test_cli_refuses_a_net_too_big_to_build(tmp_path, capsys, command):
    spec = tmp_path / "huge.json"
    spec.write_text(json.dumps(HUGE_SPEC))
    code, err = _cli(capsys, command, str(spec))
    assert code == 2 and "parameters" in err and "limit" in err and "\n" not in err


@pytest.mark.parametrize("batch", ["1000000000", "50000000"])
def test_cli_gradients_refuses_a_huge_probe_batch(capsys, batch):
    code, err = _cli(capsys, "gradients", "resnet20", "--batch", batch)
    assert code == 2 and err.startswith("error: memory:") and "allows" in err


@pytest.mark.parametrize(
    "flags, word",
    [
        (["--subset", "100000000"], "subset"),
        (["--subset", "2000000000"], "subset"),
        (["--batch-size", "65536", "--model", "resnet152"], "memory"),
        (["--batch-size", "60000", "--model", "resnet56"], "memory"),
    ],
)
def test_cli_train_refuses_work_too_big(tmp_path, capsys, flags, word):
    runs_root = tmp_path / "runs"
    code, err = _cli(
        capsys,
        "train",
        "--dataset",
        "synthetic",
        "--device",
        "cpu",
        "--runs-root",
        str(runs_root),
        *flags,
    )
    assert code == 2 and word in err and "more than" in err and "\n" not in err
    assert not runs_root.exists()  # no run folder for a refused run


def test_fit_and_queue_refuse_before_allocating(tmp_path):
    config = {"dataset": "synthetic", "subset": 300_000_000, "device": "cpu"}
    with pytest.raises(ConfigError, match="subset"):
        fit(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    queue = JobQueue(tmp_path / "checkpoints", worker=["true"])
    with pytest.raises(ConfigError, match="memory"):
        queue.submit({"model": "resnet152", "batch_size": 65536, "device": "cpu"})
    assert queue.jobs() == []
