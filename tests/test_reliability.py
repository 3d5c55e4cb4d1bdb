"""Reliability at the chokepoints (issue: the same failure classes on new surface): files that
are not regular files, numbers out of range, malformed checkpoint records, outputs that would
replace something, and two processes recording one run. Each is closed in one module, and
every entry point goes through it (`test_chokepoints.py` scans for bypasses)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from app_helpers import QUICK_CPU_RUN, app_test, tiny_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from resnet_core.cli.main import main
from resnet_core.common.files import (
    NotARegularFile,
    OutputRefused,
    check_output,
    parse_json,
    read_json,
    read_regular_bytes,
    write_new,
)
from resnet_core.common.weights import SavedFileError, load_saved
from resnet_core.training.data import CIFAR10_CLASSES, DatasetNotFound, load_cifar10
from resnet_core.training.runs import (
    RunError,
    RunLock,
    list_runs,
    load_checkpoint,
    load_run,
    read_metrics,
    read_status,
    run_info,
)
from resnet_core.training.tensorboard_export import run_scalars
from resnet_core.training.trainer import Trainer, TrainingFailed

HUGE = "1" + "0" * 400  # a JSON integer no float can hold


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One briefly trained synthetic run, copied by the tests that change it."""
    return tiny_run(tmp_path_factory.mktemp("reliability") / "checkpoints")


def _copy_run(run_dir: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    for entry in run_dir.iterdir():
        (to / entry.name).write_bytes(entry.read_bytes())
    return to


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# Files that are not regular files ------------------------------------------------------------
def test_a_fifo_is_refused_at_once_never_waited_on(tmp_path):
    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile):
        read_regular_bytes(fifo)
    assert read_json(fifo) is None
    with pytest.raises(SavedFileError) as caught:
        load_saved(fifo)
    assert caught.value.kind == "not_file"


def test_a_fifo_as_metrics_gives_no_metrics_and_the_export_says_so(run_dir, tmp_path, capsys):
    run = _copy_run(run_dir, tmp_path / "run")
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    assert read_metrics(run) == []
    assert main(["runs", "export", str(run), "--tensorboard", str(tmp_path / "tb")]) == 2
    assert "no metrics logged" in _one_line_error(capsys)


def _image_folder(root: Path) -> Path:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    for split in ("train", "test"):
        for name in CIFAR10_CLASSES:
            (root / split / name).mkdir(parents=True)
            Image.fromarray(pixels).save(root / split / name / "0.png")
    return root


def test_a_fifo_in_the_data_folder_is_one_line_not_a_hung_thread(tmp_path):
    root = _image_folder(tmp_path / "cifar")
    os.mkfifo(root / "train" / "cat" / "1.jpg")
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_cifar10(root)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome.append(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=120)  # a blocking open would never return
    assert not worker.is_alive(), "loading blocked on a FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], DatasetNotFound)
    assert "1.jpg" in str(outcome[0]) and "\n" not in str(outcome[0])


# Numbers out of range ------------------------------------------------------------------------
def test_json_numbers_past_any_float_are_refused():
    with pytest.raises(ValueError, match="digits"):
        parse_json('{"seconds": ' + HUGE + "}")
    with pytest.raises(ValueError, match="out of range"):
        parse_json('{"loss": 1e999}')
    assert parse_json('{"loss": NaN, "step": 12, "lr": 0.1}')["step"] == 12  # kept as written


def test_a_status_with_a_400_digit_number_is_unreadable_not_an_overflow(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "runs" / "r")
    status = json.loads((run / "status.json").read_text())
    text = json.dumps({**status, "seconds": 1}).replace('"seconds": 1', '"seconds": ' + HUGE)
    (run / "status.json").write_text(text)
    with pytest.raises(RunError, match="status.json"):
        read_status(run)
    info = run_info(run)  # the runs list shows the run, without its time
    assert info.id == "r"
    assert [i.id for i in list_runs(tmp_path / "runs")] == ["r"]


def test_a_401_digit_loss_in_metrics_is_skipped(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "run")
    before = len(run_scalars(run))
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as stream:
        stream.write('{"event": "step", "step": 3, "epoch": 1, "loss": ' + HUGE + "}\n")
    assert len(run_scalars(run)) == before


# Malformed checkpoint records ----------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("config", [1, 2]), ("spec", "resnet20"), ("model", [])])
def test_a_checkpoint_whose_record_is_not_a_dict_is_one_line(run_dir, tmp_path, key, value):
    run = _copy_run(run_dir, tmp_path / "run")
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    buffer = io.BytesIO()
    torch.save({**checkpoint, key: value}, buffer)
    (run / "best.pt").write_bytes(buffer.getvalue())
    with pytest.raises(RunError) as caught:
        load_checkpoint(run / "best.pt")
    assert "damaged" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(RunError):
        load_run(run)


def test_unreadable_bytes_never_quote_torch(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(range(101)) * 3)
    with pytest.raises(RunError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "may be truncated" in message and "KeyError" not in message
    assert "weights_only" not in message


# Outputs that would replace something --------------------------------------------------------
def test_write_new_never_replaces(tmp_path):
    path = tmp_path / "out.csv"
    write_new(path, lambda stream: stream.write(b"first"))
    with pytest.raises(FileExistsError):
        write_new(path, lambda stream: stream.write(b"second"))
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temp file left


def test_check_output_refuses_what_exists_a_missing_folder_and_a_run_folder(run_dir, tmp_path):
    (tmp_path / "taken.csv").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.csv")
    for path, reason in [
        (tmp_path / "taken.csv", "already exists"),
        (tmp_path / "dangling.csv", "already exists"),
        (tmp_path / "missing" / "x.csv", "no such folder"),
        (run_dir / "export.onnx", "is a run folder"),
        (run_dir / "status.json", "already exists"),
    ]:
        with pytest.raises(OutputRefused, match=reason):
            check_output(path)
    assert check_output(tmp_path / "new.csv") == tmp_path / "new.csv"


def test_cli_outputs_refuse_before_any_work_and_replace_nothing(run_dir, tmp_path, capsys):
    kept = tmp_path / "kept.csv"
    kept.write_text("mine\n")
    before = _digests(run_dir)
    commands = [
        ["lesion", str(run_dir), "--out", str(kept)],
        ["lesion", str(run_dir), "--out", str(run_dir / "status.json")],
        ["landscape", str(run_dir), "--out", str(kept)],
        ["landscape", str(run_dir), "--out", str(run_dir / "x.csv")],
        ["export", "resnet20", "--out", str(kept)],
        ["export", "resnet20", "--out", str(tmp_path / "missing" / "x.onnx")],
        ["export", "resnet20", "--out", str(run_dir / "net.onnx")],
        ["runs", "export", str(run_dir), "--onnx", str(run_dir / "net.onnx")],
        ["runs", "export", str(run_dir), "--tensorboard", str(run_dir / "tb")],
    ]
    for command in commands:
        assert main(command) == 2, command
        err = _one_line_error(capsys)
        assert ".tmp" not in err, err
    assert kept.read_text() == "mine\n" and _digests(run_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.csv"]


# Two processes recording one run -------------------------------------------------------------
def test_a_run_folder_is_locked_while_recorded(tmp_path):
    lock = RunLock(tmp_path)
    with pytest.raises(RunError, match="another process is recording"):
        RunLock(tmp_path)
    lock.release()
    RunLock(tmp_path).release()


def test_resuming_a_run_being_recorded_is_refused_at_once(run_dir):
    lock = RunLock(run_dir)  # as the process recording it holds it
    try:
        with pytest.raises(RunError, match="another process is recording"):
            Trainer({**QUICK_CPU_RUN, "epochs": 2}, resume=run_dir)
    finally:
        lock.release()


def test_a_second_new_run_in_the_same_folder_writes_nothing(tmp_path):
    folder = tmp_path / "same"
    folder.mkdir()
    lock = RunLock(folder)  # the first run, between its setup and its first file
    try:
        with pytest.raises(TrainingFailed, match="another process is recording"):
            Trainer(QUICK_CPU_RUN, run_dir=folder).fit()
    finally:
        lock.release()
    assert list(folder.iterdir()) == []


# Every page, over a checkpoints folder holding each kind of malformed record ------------------
APP_PAGES = re.findall(r'st\.Page\(\s*"(pages/\w+\.py)"', Path("app.py").read_text())


@pytest.fixture(scope="module")
def hostile_checkpoints(run_dir, tmp_path_factory) -> Path:
    """A checkpoints folder with a 400-digit status, a checkpoint whose config is a list, a
    FIFO for metrics, and a queue file with a 400-digit number, beside one good run."""
    root = tmp_path_factory.mktemp("hostile") / "checkpoints"
    _copy_run(run_dir, root / "runs" / "good")
    huge = _copy_run(run_dir, root / "runs" / "huge-status")
    status = json.loads((huge / "status.json").read_text())
    (huge / "status.json").write_text(
        json.dumps({**status, "seconds": 1}).replace('"seconds": 1', '"seconds": ' + HUGE)
    )
    listed = _copy_run(run_dir, root / "runs" / "listed-config")
    checkpoint = torch.load(listed / "best.pt", weights_only=True)
    buffer = io.BytesIO()
    torch.save({**checkpoint, "config": [1, 2]}, buffer)
    (listed / "best.pt").write_bytes(buffer.getvalue())
    fifo = _copy_run(run_dir, root / "runs" / "fifo-metrics")
    (fifo / "metrics.jsonl").unlink()
    os.mkfifo(fifo / "metrics.jsonl")
    (root / "queue").mkdir()
    (root / "queue" / "job-huge.json").write_text('{"job_id": "job-huge", "created": ' + HUGE + "}")
    return root


def test_the_scan_finds_every_page():
    assert len(APP_PAGES) == len(list(Path("pages").glob("[!_]*.py"))) >= 9


@pytest.mark.parametrize("page", APP_PAGES)
def test_no_page_breaks_on_malformed_records(hostile_checkpoints, monkeypatch, tmp_path, page):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(hostile_checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page(page).run()
    assert [e.value for e in at.exception] == []
    stopped = [e.value for e in at.error if "This page stopped" in e.value]
    assert stopped == [], stopped


# Resources bounded before the work starts ----------------------------------------------------
def test_a_run_describing_a_huge_net_is_refused_before_it_is_built(run_dir, tmp_path, capsys):
    run = _copy_run(run_dir, tmp_path / "huge")
    spec = json.loads((run / "spec.json").read_text())
    (run / "spec.json").write_text(json.dumps({**spec, "widths": [8192, 8192, 8192]}))
    with pytest.raises(RunError, match="too big"):
        load_run(run)
    for command in (["eval", str(run)], ["runs", "export", str(run), "--onnx", "x.onnx"]):
        assert main(command) == 2, command
        assert "too big" in _one_line_error(capsys)


def test_an_export_too_big_for_memory_is_refused_before_it_starts(tmp_path, capsys):
    out = tmp_path / "big.onnx"
    assert main(["export", "resnet152-imagenet", "--side", "1024", "--out", str(out)]) == 2
    assert "memory" in _one_line_error(capsys) and not out.exists()


def test_lesion_draws_are_bounded(run_dir, capsys):
    assert main(["lesion", str(run_dir), "--draws", "100000000"]) == 2
    assert "between 0 and" in _one_line_error(capsys)


# Every input checked before the first unit of work; runs kept apart --------------------------
def test_two_runs_of_one_net_stay_two_nets(run_dir, tmp_path):
    from resnet_core.studies.lesion import lesion_labels

    other = _copy_run(run_dir, tmp_path / "other")
    labels = lesion_labels([run_dir, other])
    assert labels == {str(run_dir): f"resnet20 ({run_dir.name})", str(other): "resnet20 (other)"}
    with pytest.raises(RunError, match="named twice"):
        lesion_labels([run_dir, run_dir])


def test_lesion_refuses_a_bad_second_run_before_measuring_the_first(run_dir, tmp_path, capsys):
    cnn = tiny_run(tmp_path / "checkpoints", "small_cnn")
    assert main(["lesion", str(run_dir), str(cnn), "--draws", "0", "--images", "20"]) == 2
    captured = capsys.readouterr()
    assert "no ResNet blocks" in captured.err and "deleted block" not in captured.err


# Work a request may cost the shared server ---------------------------------------------------
@pytest.mark.parametrize("name", ["resnet20", "resnet50", "resnet18-imagenet", "small_cnn"])
def test_the_work_estimate_is_the_traced_count(name):
    from resnet_core.analysis.trace import trace_shapes
    from resnet_core.nets.model import build_model
    from resnet_core.nets.onnx_export import input_side
    from resnet_core.nets.size import estimate_mult_adds
    from resnet_core.nets.spec import resolve_spec

    spec = resolve_spec(name)
    side = input_side(spec)
    traced = trace_shapes(build_model(spec), (1, spec.in_channels, side, side))
    # convs and the linear layer; BatchNorm's few multiply-adds per value are left out
    assert estimate_mult_adds(spec, side) == pytest.approx(int(traced["mult_adds"].sum()), rel=1e-3)


COSTLY = {"depths": [1, 1, 1], "widths": [1024, 1024, 1024]}  # 57 M parameters, 19 G at 32x32


def test_a_link_to_a_net_too_costly_for_the_server_is_not_built(monkeypatch, tmp_path):
    from resnet_core.nets.size import SpecError, WorkTooBig, check_server_work
    from resnet_core.nets.spec import ArchSpec

    with pytest.raises(WorkTooBig, match="multiply-adds"):
        check_server_work(ArchSpec.from_dict(COSTLY), 32)
    assert issubclass(WorkTooBig, SpecError)
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.query_params["net"] = json.dumps(COSTLY)
    at.run()
    assert [e.value for e in at.exception] == []
    assert any("multiply-adds" in w.value for w in at.warning)
    assert next(m.value for m in at.metric if m.label == "Input").endswith("x32")  # the default net


def test_a_gradient_measurement_too_costly_for_the_server_is_refused():
    from resnet_core.nets.size import GRADIENT_MULT_ADDS, WorkTooBig, check_server_work
    from resnet_core.nets.spec import resolve_spec

    big = resolve_spec("resnet152-imagenet")
    check_server_work(big, 224, 3 * 16, GRADIENT_MULT_ADDS)  # the page's default batch: fine
    with pytest.raises(WorkTooBig, match="192 image passes"):
        check_server_work(big, 224, 3 * 64, GRADIENT_MULT_ADDS)


@pytest.mark.parametrize(
    "field, value", [("seconds", 1e308), ("seconds", -5), ("best_test_acc", 7.5), ("epoch", 1e300)]
)
def test_status_numbers_out_of_range_are_shown_as_unknown(run_dir, tmp_path, field, value):
    run = _copy_run(run_dir, tmp_path / "run")
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, field: value}))
    info = run_info(run)
    shown = {"seconds": info.seconds, "best_test_acc": info.best_test_acc, "epoch": info.epoch}
    assert shown[field] in (None, 0)


# Generated records: whatever a file holds, a reader answers or refuses in one line -----------
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
STATUS_FIELDS = ("state", "seconds", "best_test_acc", "final_test_acc", "epoch", "epochs", "pid")


RUNNING = st.fixed_dictionaries(
    {"state": st.just("running")},
    optional={"pid": JSON_VALUES | st.integers(), "host": JSON_VALUES},
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=st.dictionaries(st.sampled_from(STATUS_FIELDS), JSON_VALUES, max_size=7) | RUNNING)
def test_any_status_reads_as_a_run_with_numbers_in_range(run_dir, tmp_path, status):
    run = tmp_path / "runs" / "r"
    if not run.exists():
        _copy_run(run_dir, run)
    (run / "status.json").write_text(json.dumps(status))
    info = run_info(run)  # never raises
    assert info.seconds is None or 0 <= info.seconds <= 10 * 365 * 24 * 3600
    assert all(v is None or 0 <= v <= 1 for v in (info.best_test_acc, info.final_test_acc))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(JSON_VALUES.map(json.dumps) | st.text(max_size=40), max_size=6))
def test_any_metrics_lines_are_read_or_skipped(run_dir, tmp_path, lines):
    run = tmp_path / "run"
    if not run.exists():
        _copy_run(run_dir, run)
    good = (run_dir / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(good + "\n".join(lines) + "\n")
    scalars = run_scalars(run)  # never raises, every value finite
    assert all(abs(value) < float("inf") for _tag, _step, value, _wall in scalars)


@pytest.mark.parametrize("pid", [2**31, 10**17, -1, 0, True, "7"])
def test_a_running_status_with_an_impossible_pid_reads_as_interrupted(run_dir, tmp_path, pid):
    run = _copy_run(run_dir, tmp_path / "run")
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": pid}))
    assert run_info(run).state == "interrupted"


def test_json_nested_deeper_than_the_stack_is_refused():
    with pytest.raises(ValueError, match="too deep"):
        parse_json("[" * 100_000 + "]" * 100_000)


def test_the_app_exports_onnx_in_a_process_of_its_own():
    import onnx

    from resnet_core.nets.onnx_export import SERVER_EXPORT_BYTES, ExportError, to_onnx_apart
    from resnet_core.nets.spec import resolve_spec

    model = onnx.load_from_string(to_onnx_apart(resolve_spec("resnet20"), 32, SERVER_EXPORT_BYTES))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images"]
    with pytest.raises(ExportError, match="memory"):  # refused before a process starts
        to_onnx_apart(resolve_spec("resnet152-imagenet"), 224, SERVER_EXPORT_BYTES)


@pytest.mark.parametrize("page", APP_PAGES)
def test_a_checkpoints_folder_that_cannot_be_written_is_one_line(monkeypatch, tmp_path, page):
    """As a read-only folder would (the tests run as root, for whom nothing is read-only): the
    checkpoints 'folder' is a file, so every write under it fails."""
    blocked = tmp_path / "checkpoints"
    blocked.write_text("not a folder")
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(blocked))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page(page).run()
    assert [e.value for e in at.exception] == []
    for error in at.error:
        assert "\n" not in error.value.strip() and str(tmp_path) not in error.value, error.value
