"""Nothing a command did not create is deleted or overwritten (issue: deletes and writes that
destroy what is not theirs). Every case checks the message, the exit code and that the
other files are byte-identical afterwards."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from app_helpers import QUICK_CPU_RUN

from resnet_core.cli.main import main
from resnet_core.training.experiment_runner import run_experiment
from resnet_core.training.fitting import fit
from resnet_core.training.runs import RunError, claim_run_dir, delete_run, is_run_folder

TINY_EXPERIMENT = {
    "dataset": "synthetic",
    "subset": 100,
    "batch_size": 50,
    "precision": "fp32",
    "channels_last": False,
    "eval_batch_size": 500,
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "done-run"
    fit(QUICK_CPU_RUN, run_dir=run_dir)
    return run_dir


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


# Deleting -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "files",
    [
        {"notes.txt": b"my thesis"},  # no status.json: not a run
        {"status.json": b'{"state": "done"}', "thesis.tex": b"\\documentclass"},  # extra file
        {"status.json": b'{"state": "done"}', "data/": b""},  # a sub-folder
        {"config.json": b"{}", "metrics.jsonl": b""},  # run-like names, but no status.json
    ],
)
def test_runs_delete_refuses_folders_that_are_not_runs(tmp_path, capsys, files):
    folder = tmp_path / "notarun"
    folder.mkdir()
    for name, data in files.items():
        if name.endswith("/"):
            (folder / name).mkdir()
        else:
            (folder / name).write_bytes(data)
    before = _snapshot(tmp_path)
    code, err = _cli(capsys, "runs", "--root", str(tmp_path), "--delete", "notarun")
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert "Traceback" not in err and _snapshot(tmp_path) == before
    assert folder.is_dir() and not is_run_folder(folder)


@pytest.mark.parametrize("run_id", ["..", "../outside", "a/../../b", "/etc", ""])
def test_runs_delete_refuses_ids_that_escape(tmp_path, capsys, run_id):
    (tmp_path / "runs").mkdir()
    (tmp_path / "keep.txt").write_text("keep")
    code, err = _cli(capsys, "runs", "--root", str(tmp_path / "runs"), "--delete", run_id)
    assert code == 2 and err.startswith("error: ") and (tmp_path / "keep.txt").exists()


def test_delete_removes_a_finished_run_and_only_it(tmp_path):
    run_dir = tmp_path / "r1"
    fit(QUICK_CPU_RUN, run_dir=run_dir)
    (tmp_path / "other.txt").write_text("other")
    assert is_run_folder(run_dir)
    delete_run("r1", root=tmp_path)
    assert not run_dir.exists() and (tmp_path / "other.txt").read_text() == "other"


# Writing ------------------------------------------------------------------------------------
def test_train_run_dir_holding_a_run_is_refused_and_left_alone(finished, capsys):
    before = _snapshot(finished)
    code, err = _cli(
        capsys,
        "train",
        "--dataset",
        "synthetic",
        "--subset",
        "100",
        "--run-dir",
        str(finished),
        "--no-progress",
    )
    assert code == 2 and "already holds files" in err and "\n" not in err
    assert _snapshot(finished) == before


@pytest.mark.parametrize("kind", ["file", "foreign-folder"])
def test_run_dir_that_is_a_file_or_someone_elses_folder(tmp_path, capsys, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        (target / "photo.jpg").write_bytes(b"\xff\xd8")
    before = _snapshot(tmp_path)
    with pytest.raises(RunError):
        fit(QUICK_CPU_RUN, run_dir=target)
    code, err = _cli(capsys, "train", "--dataset", "synthetic", "--run-dir", str(target))
    assert code == 2 and str(target) in err and _snapshot(tmp_path) == before


def test_resume_needs_a_run_folder(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "status.txt").write_text("x")
    before = _snapshot(tmp_path)
    with pytest.raises(RunError, match="not a run folder"):
        claim_run_dir(tmp_path / "plain", resume=True)
    assert _snapshot(tmp_path) == before


def test_an_empty_or_new_folder_is_accepted(tmp_path):
    (tmp_path / "empty").mkdir()
    assert claim_run_dir(tmp_path / "empty") == tmp_path / "empty"
    assert claim_run_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.parametrize("epochs", ["-1", "0", "1.5"])
def test_experiment_with_bad_settings_touches_nothing(tmp_path, capsys, epochs):
    out = tmp_path / "out"
    code, err = _cli(capsys, "experiment", "degradation", "--epochs", epochs, "--out", str(out))
    assert code == 2 and err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert "epochs" in err.splitlines()[-1]
    assert not out.exists()


def test_experiment_into_a_folder_with_earlier_runs_is_refused(tmp_path):
    folder = run_experiment(
        "cnn_vs_resnet", tmp_path, device="cpu", overrides=TINY_EXPERIMENT, command="test"
    )
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="already holds files"):
        run_experiment(
            "cnn_vs_resnet", tmp_path, device="cpu", overrides=TINY_EXPERIMENT, command="test"
        )
    assert _snapshot(tmp_path) == before and (folder / "experiment.json").is_file()


def test_experiment_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("a file")
    code, err = _cli(capsys, "experiment", "degradation", "--out", str(out), "--device", "cpu")
    assert code == 2 and err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert out.read_text() == "a file"
    assert os.listdir(tmp_path) == ["results"]
