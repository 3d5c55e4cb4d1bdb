"""benchmarks/cpu_profile.py: operators grouped as RESULTS.md reports them, and a short
profile of our own training step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import cpu_profile  # noqa: E402


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
