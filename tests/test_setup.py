"""What the README's two commands rely on: the browser provisioning `make test` runs, CI
calling nothing but `make test`, and the app's Streamlit settings."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from resnet_core import build_model, trace_blocks
from resnet_core.views.diagram import block_diagram
from resnet_core.views.lecture import residual_block_dot

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_browser.sh"


def test_ci_runs_only_the_readme_test_command():
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[-1] == "make test"
    assert not [line for line in lines if "apt-get" in line or "pip " in line]


def test_make_test_provides_the_browser_first():
    makefile = (ROOT / "Makefile").read_text()
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "$(BROWSER)" in test_rule
    assert "scripts/install_browser.sh" in makefile


def test_install_browser_uses_a_chromium_already_there(tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "CHROMIUM": str(fake)}
    done = subprocess.run(
        ["sh", str(SCRIPT), str(Path(sys.executable).parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and f"Chromium at {fake}" in done.stdout


def test_streamlit_settings():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["theme"]["base"] == "light"
    # Streamlit's own list of the files in pages/ never shows; app.py draws the page links
    assert config["client"]["showSidebarNavigation"] is False
    assert config["client"]["toolbarMode"] == "viewer"
    # what made ten sessions at once slow (benchmarks/concurrent_pages.py)
    assert config["server"]["fileWatcherType"] == "none"
    # this machine only, unless a server names its address (and the Exercises page then runs
    # no visitor's code unless told to)
    assert config["server"]["address"] == "localhost"
    assert config["runner"]["postScriptGC"] is False


def test_the_app_uses_only_streamlits_public_api():
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
    private = [
        f"{path.name}: {line.strip()}"
        for path in files
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from|import) streamlit\.", line)
    ]
    assert not private, private


@pytest.mark.parametrize(
    "dot",
    [
        residual_block_dot(True),
        residual_block_dot(False),
        block_diagram(trace_blocks(build_model("resnet20"), (1, 3, 32, 32)), "ResNet-20"),
    ],
)
def test_diagrams_draw_their_own_white_background(dot):
    """Black edges on a transparent background vanish on a dark theme."""
    assert "bgcolor=white" in dot.split("{", 1)[1].split("node", 1)[0]
