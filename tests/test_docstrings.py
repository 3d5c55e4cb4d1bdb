"""The package's maps stay true: each layer's docstring names every module in it, the command
line's docstring names every subcommand, a misspelt subcommand module fails loudly, and no
module grows past what one reader holds at once."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from resnet_core.cli import main as cli_main

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_core"
LAYERS = sorted(p.parent for p in PACKAGE.glob("*/__init__.py"))
MAX_MODULE_LINES = 520  # "no module over ~500 lines"


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


@pytest.mark.parametrize("layer", LAYERS, ids=lambda p: p.name)
def test_each_layer_docstring_names_its_modules(layer: Path):
    named = set(re.findall(r"`([a-z_0-9]+)`", _docstring(layer / "__init__.py")))
    modules = {p.stem for p in layer.glob("*.py") if not p.name.startswith("__")}
    assert modules, layer
    assert sorted(modules - named) == [], f"{layer.name}/__init__.py does not name these"


def _subcommands() -> list[str]:
    parser = cli_main.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_cli_docstring_names_every_subcommand():
    commands = _subcommands()
    assert len(commands) >= 11, commands
    doc = _docstring(PACKAGE / "cli" / "main.py")
    assert [c for c in commands if not re.search(rf"\b{c}\b", doc)] == []


def test_a_misspelt_subcommand_module_fails_loudly(monkeypatch):
    monkeypatch.setattr(
        cli_main, "PLUGIN_MODULES", (*cli_main.PLUGIN_MODULES, "resnet_core.cli.trian")
    )
    with pytest.raises(ModuleNotFoundError, match="trian"):
        cli_main.build_parser()


def test_no_module_is_longer_than_one_reader_holds():
    lengths = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}
