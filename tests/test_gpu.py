"""CUDA checks of the training engine; skipped where no GPU is visible.

Run on a GPU box with `pytest -m gpu tests/test_gpu.py` (benchmarks/device_run.sh does).
"""

from __future__ import annotations

import pytest
import torch

from resnet_core import build_model
from resnet_core.training.config import TrainConfig
from resnet_core.training.data import load_cifar10, synthetic_cifar10
from resnet_core.training.fitting import fit, iter_fit
from resnet_core.training.loader import DeviceLoader

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TINY = dict(
    model="resnet20",
    dataset="synthetic",
    subset=1280,
    batch_size=128,
    epochs=2,
    device="cuda",
    seed=0,
)


def test_cuda_fit_on_synthetic_learns():
    events = []
    result = fit(TrainConfig(**{**TINY, "epochs": 4}), on_event=events.append)
    assert events[0]["device"].startswith("cuda")
    assert result.state == "done" and result.final_test_acc > 0.5
    assert next(result.model.parameters()).is_cuda


def test_cuda_few_real_steps(cifar_root):
    config = TrainConfig(
        model="resnet20",
        data_dir=str(cifar_root),
        subset=5000,
        epochs=3,
        batch_size=128,
        device="cuda",
        precision="bf16",
        channels_last=True,
    )
    result = fit(config)
    assert result.final_test_acc > 0.25


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_autocast_precisions_train(precision):
    losses = [
        e["loss"]
        for e in iter_fit(TrainConfig(**{**TINY, "precision": precision, "epochs": 1}))
        if e["event"] == "step"
    ]
    assert len(losses) == 10 and all(torch.isfinite(torch.tensor(losses)))


def test_bf16_autocast_runs_convs_in_bf16():
    model = build_model("resnet20").cuda().to(memory_format=torch.channels_last)
    inputs = torch.randn(8, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model.conv1(inputs)
    assert out.dtype == torch.bfloat16


def test_loader_keeps_data_on_device():
    data = synthetic_cifar10(512, 64)
    loader = DeviceLoader(data.train_images, data.train_labels, 128, "cuda", channels_last=True)
    assert loader.images.is_cuda
    batch, labels = next(iter(loader))
    assert batch.is_cuda and labels.is_cuda
    assert batch.is_contiguous(memory_format=torch.channels_last)
    cpu = DeviceLoader(data.train_images, data.train_labels, 128, "cpu", channels_last=True)
    cpu_batch, cpu_labels = next(iter(cpu))
    torch.testing.assert_close(labels.cpu(), cpu_labels)  # same order on every device
    torch.testing.assert_close(batch.cpu(), cpu_batch)


def test_same_seed_same_first_steps_on_cuda():
    def losses():
        stream = iter_fit(TrainConfig(**{**TINY, "epochs": 1, "precision": "fp32"}))
        return [e["loss"] for e in stream if e["event"] == "step"][:3]

    torch.backends.cudnn.deterministic = True
    try:
        first, second = losses(), losses()
    finally:
        torch.backends.cudnn.deterministic = False
    torch.testing.assert_close(torch.tensor(first), torch.tensor(second), rtol=1e-4, atol=1e-4)


def test_real_data_loads_to_gpu(cifar_root):
    data = load_cifar10(cifar_root, subset=1000)
    loader = DeviceLoader(data.train_images, data.train_labels, 500, "cuda")
    assert sum(len(labels) for _batch, labels in loader) == 1000


def test_cuda_graphs_compile_trains_like_eager():
    """compile_mode="reduce-overhead" (CUDA graphs) learns as the eager loop does."""
    config = dict(TINY, model={"depths": [1, 1, 1], "widths": [16, 32, 64]}, epochs=3)
    graphs = fit(TrainConfig(**config, compile=True, compile_mode="reduce-overhead"))
    eager = fit(TrainConfig(**config))
    assert graphs.state == "done"
    assert graphs.history[-1]["train_loss"] == pytest.approx(
        eager.history[-1]["train_loss"], rel=0.1
    )
    assert graphs.final_test_acc == pytest.approx(eager.final_test_acc, abs=0.1)


def test_cuda_lockstep_group_trains_both_nets(tmp_path):
    from resnet_core.training.lockstep import fit_group
    from resnet_core.training.runs import run_info

    folders = [tmp_path / "plain", tmp_path / "residual"]
    configs = [{**TINY, "model": "plain20"}, {**TINY, "model": "resnet20"}]
    results = fit_group(configs, folders)
    assert [r.state for r in results] == ["done", "done"]
    assert all(next(r.model.parameters()).is_cuda for r in results)
    assert [run_info(folder).state for folder in folders] == ["done", "done"]
    assert results[0].steps == results[1].steps == 2 * (1280 // 128)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_torchrun_two_gpus_nccl_matches_one_gpu(tmp_path):
    """Two ranks on cuda:0 and cuda:1 (nccl) train like one GPU with the same global batch."""
    import json
    import os
    import subprocess
    from pathlib import Path

    from resnet_core.training.distributed import torchrun_command

    repo = Path(__file__).resolve().parent.parent
    run = dict(TINY, precision="fp32", epochs=2)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in run.items()]
    args = ["-m", "resnet_core", "train", *flags, "--run-dir", str(tmp_path / "run")]
    command = torchrun_command(2, [*args, "--no-progress", "--format", "json"])
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "done" and status["processes"] == 2
    from resnet_core.common.device import data_parallel_name

    # "cuda:0, cuda:1 (<name>)" where CUDA_VISIBLE_DEVICES is unset
    assert status["device"] == data_parallel_name(torch.device("cuda", 0), 2)
    single = fit(TrainConfig(**run))
    assert status["step"] == single.steps
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["final_test_acc"] == pytest.approx(single.final_test_acc, abs=0.1)
