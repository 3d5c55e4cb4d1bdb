"""One malformed file never breaks a page, the CLI or the queue for everyone: the bad record
is skipped or the bad run shown as unreadable, and it can still be deleted."""

from __future__ import annotations

import json
import time

import pytest
from app_helpers import app_test, no_exceptions, tiny_run

from resnet_core.cli.main import main
from resnet_core.training.jobs import Job, JobQueue
from resnet_core.training.runs import list_runs, read_events, run_info

BAD_METRIC_LINES = [
    '{"event": "epoch", "epoch": 1, "test_acc": "low"}',
    '{"event": "step", "step": "7", "loss": 2.0}',
    '{"event": "epoch", "epoch": 2, "train_acc": true}',
    '{"event": "done", "seconds": NaN}',
    "[1, 2, 3]",
    '{"event": "start", "classes": "cat"',
]
BAD_STATUS = ["", "garbage", "[1, 2]", '"done"', "{"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    checkpoints = tmp_path_factory.mktemp("ck")
    return tiny_run(checkpoints, "resnet20")


def _copy(run_dir, target):
    target.mkdir(parents=True)
    for path in run_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("line", BAD_METRIC_LINES)
def test_bad_metrics_line_is_skipped(base_run, tmp_path, line):
    run_dir = _copy(base_run, tmp_path / "runs" / "bad")
    good = read_events(run_dir)
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as stream:
        stream.write(line + "\n")
    assert read_events(run_dir) == good
    assert run_info(run_dir).state == "done"


@pytest.mark.parametrize("text", BAD_STATUS)
def test_bad_status_is_unreadable_and_deletable(base_run, tmp_path, capsys, text):
    run_dir = _copy(base_run, tmp_path / "runs" / "broken")
    (run_dir / "status.json").write_text(text)
    info = run_info(run_dir)
    assert info.state == "unreadable" and "status.json" in info.message
    assert [i.state for i in list_runs(tmp_path / "runs")] == ["unreadable"]
    assert main(["runs", "--root", str(tmp_path / "runs")]) == 0
    assert "unreadable" in capsys.readouterr().out
    assert main(["runs", "--root", str(tmp_path / "runs"), "--delete", "broken"]) == 0
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("created", "yesterday"),
        ("state", 3),
        ("config", "resnet20"),
        ("run_id", "../../outside"),
        ("pid", "123"),
        ("started", [1]),
    ],
)
def test_bad_queue_file_is_skipped_and_the_queue_goes_on(tmp_path, field, value):
    queue = JobQueue(tmp_path, worker=["true"], validate=lambda config: None)
    good = queue.submit({"model": "resnet20"}, label="good")
    record = {**good.to_dict(), "job_id": "bad", field: value, "created": time.time() - 10}
    if field == "created":
        record["created"] = value
    (tmp_path / "queue" / "bad.json").write_text(json.dumps(record))
    with pytest.raises(ValueError):
        Job.from_dict(record)
    assert [job.job_id for job in queue.jobs()] == [good.job_id]
    queue.pump()  # the pump starts the good job and does not stall on the bad file
    assert queue.get(good.job_id).state in ("starting", "running", "done", "interrupted")


def test_runs_page_shows_broken_runs_and_deletes_them(base_run, tmp_path, monkeypatch):
    runs_root = tmp_path / "checkpoints" / "runs"
    bad_metrics = _copy(base_run, runs_root / "a-bad-metrics")
    with open(bad_metrics / "metrics.jsonl", "a", encoding="utf-8") as stream:
        stream.write(BAD_METRIC_LINES[0] + "\n")
    broken = _copy(base_run, runs_root / "b-broken-status")
    (broken / "status.json").write_text("garbage")
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page("pages/runs.py").run()
    assert no_exceptions(at) == []
    statuses = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["status"], strict=True))
    assert statuses == {"a-bad-metrics": "done", "b-broken-status": "unreadable"}
    data = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["data"], strict=True))
    assert data == {"a-bad-metrics": "synthetic", "b-broken-status": ""}  # not a guess
    at.selectbox(key="runs_one_Your runs").set_value("b-broken-status").run()
    assert no_exceptions(at) == []
    assert any("status.json" in c.value for c in at.caption)
    [b for b in at.button if b.label == "Yes, delete it"][0].click().run()
    assert no_exceptions(at) == [] and not broken.exists() and bad_metrics.exists()
