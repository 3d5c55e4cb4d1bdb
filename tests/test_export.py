"""Open formats out: ONNX models (checked with onnxruntime), the diagram as SVG, and a run's
metrics as TensorBoard event files (read back with TensorBoard's own reader)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from resnet_core import ArchSpec, build_model, trace_blocks
from resnet_core.cli.main import main
from resnet_core.nets.onnx_export import ExportError, check_exportable, input_side, to_onnx
from resnet_core.training.runs import load_run, read_metrics
from resnet_core.views.diagram_svg import block_diagram_svg

REPO = Path(__file__).resolve().parent.parent
SHIPPED_RUN = REPO / "checkpoints" / "demo" / "grad_flow" / "resnet20"  # logs grad norms
SVG = "{http://www.w3.org/2000/svg}"


# ONNX ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet20", "resnet18-imagenet"])
def test_onnxruntime_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = build_model(name)
    model.train()
    with torch.no_grad():  # running statistics that are not 0 and 1, so eval mode matters
        model(torch.randn(4, 3, input_side(model.spec), input_side(model.spec)))
    data = to_onnx(model)
    assert model.training  # the caller's mode is given back
    side = input_side(model.spec)
    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        expected = model(images).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images.numpy()})
    assert got.shape == (2, model.spec.num_classes)  # batch 2 through a file traced at batch 1
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)


def test_too_big_a_net_is_refused_before_it_is_built():
    huge = ArchSpec(block="bottleneck", depths=(3, 4, 23, 3), widths=(96, 192, 384, 768))
    with pytest.raises(ExportError, match="too big for an ONNX export"):
        check_exportable(huge)
    check_exportable(ArchSpec())  # a small one passes


def test_cli_exports_a_preset_and_refuses_an_existing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "resnet20", "--format", "onnx"]) == 0
    written = tmp_path / "resnet20.onnx"
    model = onnx.load_model_from_string(written.read_bytes())
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert "Netron" in capsys.readouterr().out

    before = written.read_bytes()
    assert main(["export", "resnet20"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert written.read_bytes() == before and not list(tmp_path.glob(".*tmp"))


def test_cli_exports_a_spec_file_with_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.json").write_text(json.dumps({"depths": [1, 1], "widths": [8, 16]}))
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    assert main(["export", "tiny.json", "--out", str(out), "--side", "16"]) == 0
    assert out.stat().st_size > 1000
    assert main(["export", "tiny.json"]) == 0 and (tmp_path / "tiny.onnx").is_file()
    assert main(["export", "tiny.json", "--out", "small.onnx", "--side", "1"]) == 2


# SVG -------------------------------------------------------------------------------------
def _texts(svg: str) -> list[str]:
    root = ElementTree.fromstring(svg.encode())
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def test_svg_parses_and_labels_every_block():
    blocks = trace_blocks(build_model("resnet20"))
    svg = block_diagram_svg(blocks, "resnet20", keep=None)
    texts = _texts(svg)
    names = blocks.loc[blocks["kind"] == "basic", "name"]
    assert len(names) == 9 and all(name in texts for name in names)
    assert {"stem", "pool + fc", "input", "class scores"} <= set(texts)
    assert texts.count("+") == 9  # 3 stages x 3 residual blocks
    assert texts.count("zero-pad") == 2 and texts.count("identity") == 7


def test_svg_differs_between_nets():
    residual = block_diagram_svg(trace_blocks(build_model("resnet20")), "net", keep=None)
    plain = block_diagram_svg(trace_blocks(build_model("plain20")), "net", keep=None)
    assert residual != plain and "+" not in _texts(plain)
    collapsed = _texts(block_diagram_svg(trace_blocks(build_model("resnet56")), keep=2))
    assert collapsed.count("... 6 more basic blocks ...") == 3


# TensorBoard -----------------------------------------------------------------------------
def _expected_series(run_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value}, read straight from metrics.jsonl (the last value of a step)."""
    series: dict[str, dict[int, float]] = {}
    for record in read_metrics(run_dir):
        if record["event"] == "step":
            series.setdefault("train/loss", {})[record["step"]] = record["loss"]
            series.setdefault("train/lr", {})[record["step"]] = record["lr"]
        elif record["event"] == "epoch" and record.get("test_acc") is not None:
            series.setdefault("epoch/test_accuracy", {})[record["step"]] = record["test_acc"]
            series.setdefault("epoch/test_loss", {})[record["step"]] = record["test_loss"]
        elif record["event"] == "grad_norms":
            for row in record["rows"]:
                series.setdefault(f"grad_norm/{row['layer']}", {})[record["step"]] = row[
                    "grad_norm"
                ]
    return series


def test_tensorboard_export_reads_back_equal(tmp_path, capsys):
    out = tmp_path / "tb"
    out.mkdir()  # an empty folder is fine
    assert main(["runs", "export", str(SHIPPED_RUN), "--tensorboard", str(out)]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    accumulator = EventAccumulator(str(out), size_guidance={"scalars": 0})
    accumulator.Reload()
    expected = _expected_series(SHIPPED_RUN)
    assert {"train/loss", "epoch/test_accuracy", "grad_norm/conv1"} <= set(expected)
    assert set(expected) <= set(accumulator.Tags()["scalars"])
    for tag, values in expected.items():
        got = {event.step: event.value for event in accumulator.Scalars(tag)}
        assert set(got) == set(values), tag
        for step, value in values.items():
            assert got[step] == pytest.approx(value, rel=1e-6, abs=1e-12), (tag, step)


def test_tensorboard_export_refuses_a_folder_with_files(tmp_path, capsys):
    out = tmp_path / "tb"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["runs", "export", str(SHIPPED_RUN), "--tensorboard", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds files" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tb"]  # no temp folder left


def test_tensorboard_export_finds_a_run_by_id_under_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "default"))
    root = tmp_path / "runs"
    (root / "copied").mkdir(parents=True)
    for name in ("status.json", "config.json", "metrics.jsonl"):
        shutil.copy(SHIPPED_RUN / name, root / "copied" / name)
    before = ["runs", "--root", str(root), "export", "copied", "--tensorboard"]
    assert main([*before, str(tmp_path / "a")]) == 0
    after = ["runs", "export", "copied", "--root", str(root), "--tensorboard"]
    assert main([*after, str(tmp_path / "b")]) == 0
    assert main(["runs", "export", "copied", "--tensorboard", str(tmp_path / "c")]) == 2
    files = [sorted(p.name for p in (tmp_path / x).iterdir()) for x in "ab"]
    assert all(len(names) == 1 and names[0].startswith("events.out.tfevents") for names in files)


def test_tensorboard_export_of_a_run_without_metrics(tmp_path):
    run = tmp_path / "empty-run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "queued"}))
    assert main(["runs", "export", str(run), "--tensorboard", str(tmp_path / "tb")]) == 2
    assert not (tmp_path / "tb").exists()


# A run's trained net as ONNX -------------------------------------------------------------
def test_runs_export_onnx_gives_the_trained_nets_logits(tmp_path, capsys):
    out = tmp_path / "trained.onnx"
    assert main(["runs", "export", str(SHIPPED_RUN), "--onnx", str(out)]) == 0
    assert "best.pt" in capsys.readouterr().out
    model, _ = load_run(SHIPPED_RUN, "best")
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(images).numpy()
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * max(1, np.abs(expected).max()))
    fresh = build_model("resnet20").eval()
    with torch.no_grad():  # the file holds the run's weights, not fresh ones
        assert not np.allclose(fresh(images).numpy(), got, atol=1e-2)


def test_runs_export_onnx_refuses_an_existing_file_and_asks_for_a_format(tmp_path, capsys):
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"precious")
    assert main(["runs", "export", str(SHIPPED_RUN), "--onnx", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["runs", "export", str(SHIPPED_RUN)]) == 2
    assert "--tensorboard DIR and/or --onnx FILE" in capsys.readouterr().err
    args = ["runs", "export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "x.onnx")]
    assert main(args) == 2
    assert not (tmp_path / "x.onnx").exists()
