"""benchmarks/cpu_profile.py: operators grouped as RESULTS.md reports them, and a short
profile of our own training step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import cpu_profile  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


def test_operators_fall_into_the_reported_groups():
    groups = {
        "aten::mkldnn_convolution": "convolution",
        "aten::convolution_backward": "convolution",
        "aten::native_batch_norm_backward": "BatchNorm",
        "aten::threshold_backward": "ReLU",
        "aten::clamp_min": "ReLU",
        "aten::add": "residual add",
        "aten::add_": "other",  # the optimizer's and autograd's in-place adds
        "aten::_foreach_mul_": "other",
    }
    assert {name: cpu_profile.group_of(name) for name in groups} == groups


def test_a_short_profile_reports_every_group_and_the_ceiling(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert cpu_profile.main(["--steps", "1", "--warmup", "1", "--batch-size", "16",
                             "--out", str(out)]) == 0  # fmt: skip
    record = json.loads(out.read_text())
    ms = record["ms_per_step"]
    assert set(ms) == {"convolution", "BatchNorm", "ReLU", "residual add", "other"}
    assert ms["convolution"] > 0 and ms["BatchNorm"] > 0 and ms["residual add"] > 0
    assert record["args"]["out"] == "profile.json" and str(tmp_path) not in out.read_text()
    text = capsys.readouterr().out
    ceiling = 1000 * 16 / ms["convolution"]
    assert f"with only the convolutions left: {ceiling:,.0f} images/s" in text


def test_a_step_counts_the_convolutions_as_counted_by_hand_and_a_short_run_writes_its_rates(
    tmp_path, capsys
):
    import cpu_rate

    # ResNet-20 on 32x32, counted by hand: 18 3x3 convs in the blocks (16/32/64 channels at
    # 32/16/8 px, zero-padded identity skips, no 1x1 projections) get a forward and two
    # gradients per step; the stem's conv has no input that needs a gradient.
    convs = [(16, 16, 32)] * 6 + [(16, 32, 16)] + [(32, 32, 16)] * 5
    convs += [(32, 64, 8)] + [(64, 64, 8)] * 5
    blocks = sum(2 * c_in * c_out * side * side * 9 for c_in, c_out, side in convs)
    stem = 2 * 3 * 16 * 32 * 32 * 9
    expected = 4 * (3 * blocks + 2 * stem)
    out = tmp_path / "rate.json"
    assert cpu_rate.main(["--nets", "resnet20", "--batch-size", "4", "--repeats", "1",
                          "--rounds", "1", "--gemm-size", "64", "--out", str(out)]) == 0  # fmt: skip
    record = json.loads(out.read_text())
    step = record["steps"]["resnet20"]
    assert abs(step["gflop_per_step"] * 1e9 - expected) / expected < 0.001
    assert step["gflops"] == pytest.approx(step["gflop_per_step"] / step["ms_per_step"] * 1000)
    assert set(record["machine_gflops"]) == {"gemm"} | {
        f"conv {n}" for n, *_ in cpu_rate.CONV_SHAPES
    }
    best = max(rate for name, rate in record["machine_gflops"].items() if name.startswith("conv"))
    assert f"| {100 * step['gflops'] / best:.0f} % |" in capsys.readouterr().out
    assert str(tmp_path) not in out.read_text()


def test_bf16_probe_compares_autos_probe_with_real_steps_on_one_thread_and_all(tmp_path, capsys):
    import bf16_probe

    out = tmp_path / "probe.json"
    assert bf16_probe.main(["--nets", "resnet20", "--batch-size", "4", "--rounds", "1",
                            "--out", str(out)]) == 0  # fmt: skip
    record = json.loads(out.read_text())
    threads = {1, torch.get_num_threads()}
    assert {row["threads"] for row in record["rows"]} == threads
    workloads = {row["workload"] for row in record["rows"]}
    assert {"the probe of precision auto", "resnet20 train_step, batch 4"} <= workloads
    assert len(record["rows"]) == 1 + len(threads) * 5  # the probe once, on one thread
    for row in record["rows"]:
        assert row["speedup"] > 0
        if "fp32_ms" in row:
            assert row["speedup"] == pytest.approx(row["fp32_ms"] / row["bf16_ms"])
    assert "| resnet20 train_step, batch 4 |" in capsys.readouterr().out
    assert torch.get_num_threads() in threads  # put back
    assert str(tmp_path) not in out.read_text()
