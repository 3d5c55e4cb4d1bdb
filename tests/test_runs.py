"""Run folders: files, checkpoints, corruption, ids, listing, SIGKILL, and the CLI."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_core.cli import train as cli_train
from resnet_core.training import runs
from resnet_core.training.config import TrainConfig
from resnet_core.training.fitting import fit
from resnet_core.training.runs import RunError, delete_run, list_runs, load_run, read_metrics

REPO = Path(__file__).resolve().parent.parent
TINY = dict(
    model="resnet20", dataset="synthetic", subset=640, batch_size=64, epochs=2, device="cpu", seed=0
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One tiny finished run: (run_dir, FitResult)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-run"
    result = fit(TrainConfig(**TINY), run_dir=run_dir)
    return run_dir, result


def test_metrics_are_thinned_but_end_at_the_last_step(tmp_path):
    """Steps reach metrics.jsonl at most every 0.25 s, but the run's last step always does:
    the loss curve and 'At step N of N' end where training ended."""
    config = {**TINY, "model": {"depths": [1, 1, 1], "widths": [4, 8, 8]}, "subset": 1280}
    fit(TrainConfig(**{**config, "batch_size": 16, "epochs": 1}), run_dir=tmp_path / "run")
    steps = [e["step"] for e in read_metrics(tmp_path / "run") if e["event"] == "step"]
    assert len(steps) < 80, "fast steps are thinned"
    assert steps[-1] == 1280 // 16


def test_run_dir_files(finished_run):
    run_dir, result = finished_run
    for name in ("spec.json", "config.json", "metrics.jsonl", "status.json", "best.pt", "last.pt"):
        assert (run_dir / name).is_file(), name
    recorded = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert recorded.precision in ("fp32", "bf16")  # what precision "auto" chose on this CPU
    assert recorded == TrainConfig(**TINY, precision=recorded.precision)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and status["synthetic"] is True
    assert status["best_test_acc"] == result.best_test_acc and status["pid"] == os.getpid()
    for key in ("started", "updated", "device", "message"):
        assert key in status
    events = read_metrics(run_dir)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 2
    assert not list(run_dir.glob(".*tmp"))  # no temp files left behind


def test_checkpoint_round_trip(finished_run):
    run_dir, result = finished_run
    model, info = load_run(run_dir, which="last")
    expected = {k: v.cpu() for k, v in result.model.state_dict().items()}
    torch.testing.assert_close(model.state_dict(), expected)
    assert info.state == "done" and info.synthetic and info.model == "resnet20"
    checkpoint = runs.load_checkpoint(run_dir / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["spec"] == result.model.spec.to_dict()
    assert checkpoint["versions"]["torch"] == str(torch.__version__)
    assert "optimizer" in checkpoint and "state" in checkpoint["optimizer"]
    inputs = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), result.model.cpu().eval()(inputs))


def test_eval_reproduces_recorded_accuracy(finished_run):
    run_dir, result = finished_run
    measured = cli_train.evaluate_run(run_dir, which="best")
    assert measured["test_acc"] == result.best_test_acc
    assert measured["synthetic"] is True


def _copy_run(run_dir: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("spec.json", "config.json", "status.json", "best.pt", "last.pt"):
        (target / name).write_bytes((run_dir / name).read_bytes())
    return target


def test_truncated_checkpoint_is_one_line_error(finished_run, tmp_path):
    run_dir, _ = finished_run
    copy = _copy_run(run_dir, tmp_path / "copy")
    data = (copy / "best.pt").read_bytes()
    (copy / "best.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError) as info:
        load_run(copy)
    assert "best.pt" in str(info.value) and "\n" not in str(info.value)
    load_run(copy, which="last")  # the other checkpoint still loads


def test_foreign_checkpoint_is_refused_without_running_code(finished_run, tmp_path):
    run_dir, _ = finished_run
    copy = _copy_run(run_dir, tmp_path / "copy")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Evil()}, copy / "best.pt")  # torch.save pickles the global
    with pytest.raises(RunError) as info:
        load_run(copy)
    assert not marker.exists()
    assert "best.pt" in str(info.value) and "\n" not in str(info.value)
    (copy / "last.pt").write_bytes(pickle.dumps({"hello": 1}, protocol=2))
    with pytest.raises(RunError, match="last.pt"):
        load_run(copy, which="last")
    torch.save({"model": {}, "epoch": 1}, copy / "last.pt")  # loadable, but not ours
    with pytest.raises(RunError, match="not a ResNet Explorer checkpoint"):
        load_run(copy, which="last")
    (copy / "spec.json").write_text("{broken")
    with pytest.raises(RunError, match="spec.json"):
        load_run(copy, which="best")


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "/etc", "", ".hidden", "a..b", "x" * 200])
def test_run_ids_cannot_escape(bad, tmp_path):
    with pytest.raises(RunError):
        runs.validate_run_id(bad)
    with pytest.raises(RunError):
        delete_run(bad, root=tmp_path)
    assert runs.validate_run_id("20260101-120000-resnet20_v1.2") == "20260101-120000-resnet20_v1.2"


def test_list_delete_and_interrupted(finished_run, tmp_path, monkeypatch):
    run_dir, result = finished_run
    root = tmp_path / "runs"
    root.mkdir()
    _copy_run(run_dir, root / "a-done")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = _copy_run(run_dir, root / "b-crashed")
    status = json.loads((crashed / "status.json").read_text())
    status.update(state="running", pid=dead.pid, started="2099-01-01T00:00:00+00:00")
    (crashed / "status.json").write_text(json.dumps(status))
    (root / "c-broken").mkdir()
    (root / "c-broken" / "status.json").write_text("{not json")
    infos = list_runs(root)
    by_id = {info.id: info for info in infos}
    assert infos[0].id == "b-crashed"  # newest first
    assert by_id["a-done"].state == "done" and by_id["a-done"].best_test_acc == result.best_test_acc
    assert by_id["b-crashed"].state == "interrupted"
    assert by_id["c-broken"].state == "unreadable"  # shown with the reason, deletable
    assert set(runs.RunInfo.__dataclass_fields__) >= {
        "id",
        "path",
        "model",
        "state",
        "best_test_acc",
        "seconds",
        "device",
        "started",
        "synthetic",
    }
    delete_run("a-done", root=root)
    assert not (root / "a-done").exists()
    monkeypatch.setenv(runs.CHECKPOINTS_ENV, str(tmp_path))
    assert runs.default_root() == root
    assert {info.id for info in list_runs()} == {"b-crashed", "c-broken"}


def test_read_metrics_skips_partial_last_line(tmp_path):
    lines = [json.dumps({"event": "start"}), json.dumps({"event": "step", "step": 1})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"event": "st')
    assert [e["event"] for e in read_metrics(tmp_path)] == ["start", "step"]
    assert read_metrics(tmp_path / "missing") == []


def test_resume_continues_from_last(finished_run, tmp_path):
    run_dir, result = finished_run
    copy = _copy_run(run_dir, tmp_path / "copy")
    (copy / "metrics.jsonl").write_bytes((run_dir / "metrics.jsonl").read_bytes())
    longer = TrainConfig(**{**TINY, "epochs": 3})
    resumed = fit(longer, resume=copy)
    assert resumed.state == "done" and resumed.epochs == 3
    assert runs.load_checkpoint(copy / "last.pt")["epoch"] == 3
    assert [e["epoch"] for e in read_metrics(copy) if e["event"] == "epoch"] == [1, 2, 3]


_KILL_SCRIPT = """
import sys
from resnet_core.training.config import TrainConfig
from resnet_core.training.fitting import fit
fit(TrainConfig(model="resnet20", dataset="synthetic", subset=1280, batch_size=32, epochs=4,
                device="cpu", seed=0), run_dir=sys.argv[1])
"""


def test_sigkill_during_epoch_two_leaves_loadable_last(tmp_path):
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(run_dir)], env=env)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            events = read_metrics(run_dir)
            if any(e["event"] == "step" and e["epoch"] == 2 for e in events):
                break
            assert process.poll() is None, "training ended before epoch 2"
            time.sleep(0.05)
        else:
            pytest.fail("epoch 2 did not start within 120 s")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] != "done"
    checkpoint = runs.load_checkpoint(run_dir / "last.pt")
    assert checkpoint["epoch"] == 1
    model, info = load_run(run_dir, which="last")
    assert info.state == "interrupted"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_train_eval_runs(tmp_path, capsys):
    root = tmp_path / "runs"
    code = _cli(
        [
            "train",
            "--arch",
            "resnet20",
            "--dataset",
            "synthetic",
            "--subset",
            "320",
            "--batch-size",
            "64",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--runs-root",
            str(root),
            "--no-progress",
            "--format",
            "json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["state"] == "done" and summary["synthetic"] is True
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == root
    assert _cli(["eval", str(run_dir), "--format", "json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_acc"] == summary["final_test_acc"]
    assert _cli(["runs", "--root", str(root), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [run_dir.name] and listed[0]["synthetic"] is True
    assert _cli(["runs", "--root", str(root)]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out


def test_cli_missing_data_is_one_line_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), runs.CHECKPOINTS_ENV: str(tmp_path)}
    env.pop("RESNET_EXPLORER_DATA", None)
    done = subprocess.run(
        [sys.executable, "-m", "resnet_core", "train", "--data-dir", str(tmp_path / "none")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--data-dir" in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing recorded for a run that never started


def test_cli_compile_mode_implies_compile():
    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers(dest="command"))
    config = cli_train.config_from_args(
        parser.parse_args(["train", "--compile-mode", "reduce-overhead"])
    )
    assert config.compile is True and config.compile_mode == "reduce-overhead"
    plain = cli_train.config_from_args(parser.parse_args(["train"]))
    assert plain.compile is False and plain.compile_mode == "default"
    off = cli_train.config_from_args(
        parser.parse_args(["train", "--no-compile", "--compile-mode", "max-autotune"])
    )
    assert off.compile is False


def test_cli_arch_reads_a_spec_file_and_has_model_alias(tmp_path):
    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers(dest="command"))
    spec = {"depths": [1, 1], "widths": [8, 16], "num_classes": 10}
    (tmp_path / "net.json").write_text(json.dumps(spec))
    config = cli_train.config_from_args(
        parser.parse_args(["train", "--arch", str(tmp_path / "net.json"), "--download"])
    )
    assert isinstance(config.model, dict) and config.model["depths"] == [1, 1]
    assert config.download is True
    alias = cli_train.config_from_args(parser.parse_args(["train", "--model", "resnet32"]))
    assert alias.model == "resnet32" and alias.to_dict() == TrainConfig(model="resnet32").to_dict()


def test_a_run_writer_records_a_run_from_its_events_alone(tmp_path):
    """RunWriter never reads the trainer (here None): the Start event carries what the
    folder records, the checkpoint hook the state to save."""
    from resnet_core.training.events import Done, EpochEnd, Start, Step
    from resnet_core.training.recording import RunWriter

    config, spec = TrainConfig(dataset="synthetic", epochs=1), {"depths": [1, 1, 1]}
    start = Start(config=config.to_dict(), spec=spec, model=config.label(), device="cpu",
                  total_steps=2, epochs=1, dataset="synthetic", synthetic=True)  # fmt: skip
    writer = RunWriter(tmp_path / "run")
    writer.on_event(None, start)
    writer.on_event(None, Step(step=2, epoch=1, loss=1.0))
    writer.on_checkpoint(None, {"model": {}, "epoch": 1, "step": 2}, improved=True)
    writer.on_event(None, EpochEnd(epoch=1, step=2, test_acc=0.5, best_test_acc=0.5))
    writer.on_event(None, Done(best_test_acc=0.5, final_test_acc=0.5, epochs=1, steps=2))
    writer.on_close(None)
    status = runs.read_status(tmp_path / "run")
    assert status["state"] == "done" and status["model"] == config.label()
    assert status["synthetic"] is True and status["total_steps"] == 2 and status["step"] == 2
    kinds = [record["event"] for record in read_metrics(tmp_path / "run")]
    assert kinds == ["start", "step", "epoch", "done"]
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written == json.loads(json.dumps(config.to_dict()))
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert saved["config"] == config.to_dict() and saved["spec"] == spec and saved["synthetic"]
