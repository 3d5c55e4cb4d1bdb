"""Filesystem errors and misleading messages: one line naming the path or flag and the
problem, exit code 1 or 2, no traceback, nothing overwritten."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import pytest
import torch
from app_helpers import QUICK_CPU_RUN

from resnet_core.cli.main import main
from resnet_core.training.fitting import fit
from resnet_core.training.runs import RunError, load_checkpoint


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return code, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "done-run"
    fit(QUICK_CPU_RUN, run_dir=run_dir)
    return run_dir


@pytest.mark.parametrize("flag", ["--runs-root", "--run-dir"])
def test_run_folders_pointing_at_a_file(tmp_path, capsys, flag):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code, err = _cli(
        capsys, "train", "--dataset", "synthetic", "--subset", "100", flag, str(target)
    )
    assert code in (1, 2) and str(target) in err and len(err.splitlines()) == 1
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("root", ["/proc/resnet-explorer-runs", "/sys/runs"])
def test_runs_folder_that_cannot_be_written(capsys, root):
    """/proc and /sys refuse new folders even to root: a read-only place on any Linux."""
    code, err = _cli(
        capsys, "train", "--dataset", "synthetic", "--subset", "100", "--runs-root", root
    )
    assert code in (1, 2) and root in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("missing", ["no/such/run", "./nothing-here", "../elsewhere/run"])
def test_eval_of_a_missing_folder_says_so(tmp_path, capsys, missing):
    code, err = _cli(capsys, "eval", missing, "--runs-root", str(tmp_path))
    assert code == 2 and "no such run folder" in err


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code, err = _cli(capsys, "eval", str(tmp_path / "photos"))
    assert code == 2 and "not a run folder" in err


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1", "2147483648", "abc"])
def test_out_of_range_seed_names_the_flag(capsys, seed):
    code, err = _cli(capsys, "gradients", "resnet20", "--seed", seed)
    assert code == 2 and "--seed" in err and "Overflow" not in err


@pytest.mark.parametrize("config_text", ["", "{broken", "[1, 2]", '"resnet20"'])
def test_resume_with_a_corrupt_config_refuses_and_keeps_the_file(
    finished, tmp_path, capsys, config_text
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for path in finished.iterdir():
        (run_dir / path.name).write_bytes(path.read_bytes())
    (run_dir / "config.json").write_text(config_text)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.iterdir()}
    code, err = _cli(capsys, "train", "--resume", str(run_dir), "--no-progress")
    assert code == 2 and "config.json" in err and "cannot be resumed" in err
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.iterdir()}
    assert after == before


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [{"model": _Evil()}, _Evil(), [1, _Evil()]])
def test_refused_checkpoint_does_not_suggest_weights_only_false(tmp_path, payload):
    path = tmp_path / "best.pt"
    buffer = io.BytesIO()
    torch.save(payload, buffer, pickle_module=pickle)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(RunError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "not a checkpoint this app wrote" in message and "weights_only" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"\x80\x02" + bytes(range(200, 256)) * 20, "not a checkpoint this app wrote"),  # bytes
        (b"PK\x03\x04" + b"\x00" * 40, "may be truncated"),  # a cut-off zip
        (b"", "may be truncated"),
    ],
)
def test_unreadable_checkpoint_bytes_say_what_is_wrong(tmp_path, content, reason):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(RunError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert reason in message and "weights_only" not in message and "Python objects" not in message
    assert "\n" not in message and str(path) in message
