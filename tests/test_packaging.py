"""Packaging: the wheel installs a working `resnet-explorer` (CLI, app, shipped results).

The slow test builds the wheel from a copy of the sources, installs it into a fresh venv
that borrows this venv's dependencies (a .pth file, so nothing is downloaded), and runs the
console script from a folder outside the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
from pathlib import Path

import pytest
import tomllib

from resnet_core.cli.app import config_flags, streamlit_command
from resnet_core.cli.main import build_parser
from resnet_core.training.experiments import shipped_root

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "app.py", "pages", "resnet_core", ".streamlit")
SHIPPED_WEIGHTS = Path("checkpoints/demo/degradation/resnet20/best.pt")


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_requirements_match_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert _requirement_lines(ROOT / "requirements.txt") == declared


def test_constraints_pin_every_requirement():
    pins = {}
    for line in _requirement_lines(ROOT / "constraints.txt"):
        name, _, version = line.partition("==")
        assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for path in ("requirements.txt", "requirements-dev.txt"):
        for line in _requirement_lines(ROOT / path):
            if line.startswith("-r"):
                continue
            name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", line)[0]).lower()
            assert name in pins, f"{path}: {name} has no pin in constraints.txt"
    assert "torchview" not in pins


def test_wheel_lists_every_subpackage():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "resnet_core").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_app_command_runs_the_checkout_app_with_its_settings():
    command = streamlit_command(["--server.port", "9999"])
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]) == ROOT / "app.py"
    assert command[-2:] == ["--server.port", "9999"]  # the user's options come last
    assert "--browser.gatherUsageStats" in config_flags(ROOT)
    args = build_parser().parse_args(["app", "--server.headless", "true"])
    assert args.streamlit_args == ["--server.headless", "true"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode(errors="replace")


def _copy_sources(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    target.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    shutil.copytree(ROOT / "checkpoints" / "demo", target / "checkpoints" / "demo", ignore=ignore)


@pytest.mark.slow
def test_wheel_installs_a_working_resnet_explorer(tmp_path):
    source = tmp_path / "src"
    _copy_sources(source)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    quiet = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        **quiet,
    )
    (wheel,) = wheels.glob("resnet_explorer-*.whl")

    # A fresh venv that sees this venv's packages (torch, streamlit, ...) through a .pth file.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            **quiet,
        ).stdout.strip()
    )
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        **quiet,
    )

    # From a folder outside the repository, with no checkpoints folder of its own.
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_EXPLORER_")}
    env.pop("PYTHONPATH", None)
    script = env_dir / "bin" / "resnet-explorer"
    run = {"cwd": work, "env": env, "capture_output": True, "text": True, "timeout": 120}

    presets = subprocess.run([str(script), "presets"], **run)
    assert presets.returncode == 0, presets.stderr
    assert re.search(r"resnet20\s+269,722\b", presets.stdout), presets.stdout

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import resnet_core.training.experiments as e; print(e.__file__); "
            "print(e.shipped_root())",
        ],
        **run,
    )
    module, root = where.stdout.split()
    assert Path(module).is_relative_to(site), "resnet_core came from the repository"
    assert Path(root) == site / "resnet_core" / "_app" / "checkpoints" / "demo"
    assert (site / "resnet_core" / "_app" / SHIPPED_WEIGHTS).is_file()
    assert (site / "resnet_core" / "_app" / "pages" / "_ui.py").is_file()

    port = _free_port()
    server = subprocess.Popen(
        [str(script), "app", "--server.headless", "true", "--server.port", str(port)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = _fetch(f"http://127.0.0.1:{port}/_stcore/health")
                break
            except OSError:
                time.sleep(0.5)
        assert health == (200, "ok"), f"no server on port {port}"
        status, page = _fetch(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<html" in page.lower()
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert str(site / "resnet_core" / "_app" / "app.py") in output, output
    assert not (work / "checkpoints").exists()  # nothing written by starting the app
    assert shipped_root() == ROOT / "checkpoints" / "demo"  # the checkout is unchanged


# A GPU box has torch, pandas and tqdm but no chart or app library: the commands a device
# run uses must work there. The shim makes importing these fail, as it would there.
ABSENT_THERE = ("altair", "streamlit", "torchinfo", "graphviz")
_WITHOUT = (
    "import runpy, sys\n"
    f"for name in {ABSENT_THERE!r}:\n"
    "    sys.modules[name] = None\n"
    "script = sys.argv.pop(1)\n"
    "if script == '-m':\n"
    "    runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)\n"
    "else:\n"
    "    sys.argv[0] = script\n"
    "    runpy.run_path(script, run_name='__main__')\n"
)


def _without_charts(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_device_run_commands_need_no_chart_or_app_library(tmp_path):
    charts = _without_charts("-m", "resnet_core.views.charts")  # the shim does block
    assert charts.returncode != 0 and "altair" in charts.stderr
    for command in (["experiment", "--help"], ["lesion", "--help"], ["runs", "--help"]):
        done = _without_charts("-m", "resnet_core", *command)
        assert done.returncode == 0, done.stderr[-2000:]
    done = _without_charts("benchmarks/speedrun.py", "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    run = [
        "-m", "resnet_core", "train", "--model", "resnet20", "--dataset", "synthetic",
        "--subset", "64", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
        "--no-progress", "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    done = _without_charts(*run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "last.pt").is_file()
