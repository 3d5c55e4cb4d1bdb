"""benchmarks/step_time.py on a CPU: one process per measurement, ratios to eager within
the same net and batch, partial JSON without machine paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import step_time  # noqa: E402


def test_step_time_measures_eager_and_skips_graphs_off_cuda(tmp_path):
    out = tmp_path / "step_time.json"
    args = ["--device", "cpu", "--nets", "resnet20", "--batch-sizes", "32", "--steps", "2"]
    args += ["--warmup", "1", "--modes", "eager", "graphs", "--out", str(out)]
    assert step_time.main(args) == 0
    record = json.loads(out.read_text())
    eager, graphs = record["rows"]
    assert eager["status"] == "ok" and eager["compiled"] is False
    assert eager["ms_per_step"] > 0 and eager["vs_eager"] == 1.0
    assert eager["images_per_s"] * eager["ms_per_step"] / 1000 == pytest.approx(32)
    assert graphs["status"] == "skipped" and "CUDA" in graphs["reason"]
    assert record["steps"] == 2 and record["hardware"] and record["versions"]["torch"]
    assert str(tmp_path) not in out.read_text()  # the --out path is recorded by name only


def _row(net: str, mode: str, speed: float | None, compiled: bool = True) -> dict:
    row = {"net": net, "batch_size": 512, "mode": mode}
    if speed is None:
        return {**row, "status": "failed", "reason": "timed out after 300 s"}
    return {**row, "status": "ok", "images_per_s": speed, "ms_per_step": 512e3 / speed,
            "setup_s": 1.0, "compiled": compiled}  # fmt: skip


def test_ratios_compare_within_the_same_net_and_batch():
    rows = [
        _row("resnet20", "eager", 1000.0, compiled=False),
        _row("resnet20", "compile", 1500.0),
        _row("resnet18", "eager", 500.0, compiled=False),
        _row("resnet18", "graphs", None),
        _row("resnet18", "compile", 400.0, compiled=False),
    ]
    assert [row["vs_eager"] for row in step_time.with_ratios(rows)] == [1.0, 1.5, 1.0, None, 0.8]
    text = step_time.table(rows)
    assert "| resnet20 | 512 | compile | 341.3 | 1,500 | 1.50x | 1.0 |" in text
    assert "| resnet18 | 512 | graphs | failed: timed out after 300 s |" in text
    assert "compile (fell back to eager)" in text
