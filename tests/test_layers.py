"""The package's folders show its layers: imports point downward only, library code never
imports Streamlit, and the shared helpers in `resnet_core.common` do what they promise."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet_core import build_model
from resnet_core.common.device import queue_key, resolve_device
from resnet_core.common.errors import ConfigError, failure_message, first_line
from resnet_core.common.files import pid_alive, read_json, write_atomic, write_json_atomic
from resnet_core.common.modes import frozen_bn_stats, model_mode

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_core"
LAYERS = [
    "common",
    "nets",
    "analysis",
    "exercises",
    "training",
    "studies",
    "views",
    "cli",
]  # bottom to top


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "resnet_core" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


MODULES = sorted(p for layer in LAYERS for p in (PACKAGE / layer).glob("*.py"))


def test_every_layer_has_modules_and_a_docstring_saying_what_it_may_import():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), layer
    assert not [
        p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_imports_point_downward(path: Path):
    own = LAYERS.index(path.parent.name)
    upward = [m for m in _imports(path) if (_layer(m) or 0) > own]
    assert not upward, f"{path.parent.name}/{path.name} imports from above: {upward}"
    assert not [m for m in _imports(path) if m.split(".")[0] == "streamlit"]


def test_first_line_and_failure_message():
    assert first_line(ValueError("\n\x1b[31mfirst\x1b[0m\nsecond")) == "first"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("preamble\nerror: the cause"), telling=True) == "error: the cause"
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
    assert "--batch-size 64" in failure_message(oom, batch_size=128, lr=0.1)
    assert "--lr 0.01" in failure_message(FloatingPointError("loss became nan"), 128, 0.1)


def test_resolve_device_and_queue_key(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="not available"):
        resolve_device("cuda:1")
    assert queue_key("auto") in ("cpu", "mps") and queue_key("cuda") == "cuda"
    assert queue_key(" CUDA:3 ") == "cuda:3"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "status.json"
    write_json_atomic(target, {"state": "running"})

    def broken(stream):
        stream.write(b'{"state": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, broken)
    assert read_json(target) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left
    assert read_json(tmp_path / "missing.json") is None


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(None) and not pid_alive(True) and not pid_alive(-1)


def test_mode_and_bn_statistics_are_restored():
    model = build_model("resnet20").eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with model_mode(model, train=True), frozen_bn_stats(model):
        assert model.training
        model(torch.randn(4, 3, 32, 32))
    assert not model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    bn = nn.BatchNorm2d(3)
    with pytest.raises(RuntimeError), model_mode(bn, train=False):
        raise RuntimeError("restored even on error")
    assert bn.training
