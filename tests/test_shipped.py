"""The shipped results (checkpoints/demo) and benchmark results (benchmarks/results) hold no
machine paths, and each run's recorded preset name still names the net it trained."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet_core.common.files import read_json
from resnet_core.nets.spec import ArchSpec, resolve_spec
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import load_checkpoint

SHIPPED = sorted(path for path in shipped_root().rglob("*") if path.is_file())
RUNS = sorted(path.parent for path in shipped_root().glob("*/*/spec.json"))
BENCHMARK_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MEASURED = sorted(path for path in BENCHMARK_RESULTS.rglob("*") if path.is_file())
# Home and work folders on Linux and macOS, Windows drives; any of them is this machine's.
MACHINE_PATH = re.compile(r"/work/|/home/|/Users/|/root/|/tmp/|[A-Za-z]:\\\\")

pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped results in this checkout")


def _text(path: Path) -> str | None:
    """The file as text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _strings(value) -> list[str]:
    """Every string inside nested dicts and lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    return []


def test_the_scan_finds_a_machine_path():
    assert MACHINE_PATH.search('"data_dir": "/work/main/.data/cifar10"')
    assert MACHINE_PATH.search('{"run_dir": "/Users/ann/runs/x"}')
    assert not MACHINE_PATH.search('"command": "python -m resnet_core experiment --out x"')


@pytest.mark.parametrize("path", MEASURED, ids=lambda p: str(p.relative_to(BENCHMARK_RESULTS)))
def test_benchmark_results_hold_no_machine_paths(path: Path):
    text = _text(path)
    assert text is not None, f"{path}: benchmark results are text (tables, logs, JSON)"
    found = MACHINE_PATH.search(text)
    assert found is None, f"{path}: {text[max(found.start() - 40, 0) : found.end() + 40]!r}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(shipped_root())))
def test_shipped_files_hold_no_machine_paths(path: Path):
    text = _text(path)
    if text is not None:
        found = MACHINE_PATH.search(text)
        assert found is None, f"{path}: {text[max(found.start() - 40, 0) : found.end() + 40]!r}"
    elif path.suffix == ".pt":  # the checkpoint's recorded config and spec
        checkpoint = load_checkpoint(path)
        recorded = {key: value for key, value in checkpoint.items() if key != "model"}
        assert not [s for s in _strings(recorded) if MACHINE_PATH.search(s)], path


@pytest.mark.parametrize("run_dir", RUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_shipped_run_names_the_net_it_trained(run_dir: Path):
    spec = ArchSpec.from_dict(read_json(run_dir / "spec.json"))
    config = read_json(run_dir / "config.json")
    assert config["data_dir"] is None
    assert resolve_spec(config["model"]) == spec, f"{run_dir}: {config['model']} is another net"
    assert read_json(run_dir / "status.json")["model"] == config["model"]
    if (run_dir / "best.pt").is_file():
        checkpoint = load_checkpoint(run_dir / "best.pt")
        assert ArchSpec.from_dict(checkpoint["spec"]) == spec
        assert checkpoint["config"]["model"] == config["model"]
