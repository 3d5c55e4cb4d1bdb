"""Every CLI subcommand, driven with the inputs of each failure class: malformed records, a
FIFO where a file should be, an output that exists or lies in a run folder, a net or a job
too big for the machine. Each must end in one line (or, for a listing, a normal exit) with
no traceback, replace nothing, and, for the heavy ones, stay within a memory limit.

`test_every_subcommand_is_driven` fails when a subcommand is added without cases here; the
pages are driven the same way in `test_reliability.py`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from app_helpers import tiny_run

from resnet_core.cli.main import build_parser, main
from resnet_core.training.experiments import shipped_root

HUGE = "1" + "0" * 400
HEAVY_LIMIT = 6 * 2**30  # address space of a heavy case: refused long before this is used

# subcommand -> argv lists; "{name}" fields are paths in the hostile folder (see `hostile`).
# A case starting with "!" runs in its own process under HEAVY_LIMIT.
CASES: dict[str, list[list[str]]] = {
    "presets": [["presets", "--format", "xml"]],
    "trace": [
        ["trace", "{huge_spec}"],
        ["trace", "{fifo_json}"],
        ["!trace", "resnet152-imagenet", "--input", "3x20000x20000"],
    ],
    "gradients": [
        ["!gradients", "resnet152-imagenet", "--batch", "100000"],
        ["gradients", "resnet18-imagenet", "--weights", "{fifo_json}"],
        ["gradients", "resnet18-imagenet", "--weights", "{pickle}"],
    ],
    "train": [
        ["train", "--run-dir", "{good}"],
        ["train", "--resume", "{huge_status}"],
        ["train", "--arch", "{huge_spec}"],
        ["train", "--arch", "{fifo_json}"],
    ],
    "eval": [["eval", "{listed_config}"], ["eval", "{huge_spec_run}"], ["eval", "{pickle_run}"]],
    "runs": [
        ["runs", "--root", "{runs}"],
        ["runs", "export", "{fifo_metrics}", "--tensorboard", "{new}"],
        ["runs", "export", "{good}", "--onnx", "{existing}"],
        ["runs", "export", "{good}", "--tensorboard", "{good}/tb"],
        ["runs", "export", "{huge_loss}", "--tensorboard", "{new}"],
    ],
    "export": [
        ["export", "resnet20", "--out", "{existing}"],
        ["export", "resnet20", "--out", "{missing}/x.onnx"],
        ["export", "resnet20", "--out", "{good}/net.onnx"],
        ["!export", "resnet152-imagenet", "--side", "1024", "--out", "{new}.onnx"],
        ["export", "{huge_spec}", "--out", "{new}.onnx"],
    ],
    "experiment": [
        ["experiment", "grad_flow", "--out", "{existing}"],
        ["experiment", "no_such_experiment"],
    ],
    "landscape": [  # on copies of a shipped CIFAR-10 run: a synthetic run is refused first
        ["landscape", "{cifar}", "{cifar_listed}"],
        ["landscape", "{cifar}", "{cifar_pickle}"],
        ["landscape", "{cifar}", "--out", "{existing}"],
        ["landscape", "{cifar}", "--out", "{cifar}/slice.csv"],
        ["landscape", "{cifar}", "--grid", "100000000"],
    ],
    "lesion": [
        ["lesion", "{listed_config}"],
        ["lesion", "{good}", "--draws", "100000000"],
        ["lesion", "{good}", "--out", "{existing}"],
        ["lesion", "{good}", "--out", "{good}/lesion.csv"],
        ["lesion", "{good}", "{pickle_run}"],
    ],
    "exercise": [
        ["exercise", "check", "residual_block", "{fifo_json}"],
        ["exercise", "check", "residual_block", "{missing}/x.py"],
        ["exercise", "start", "residual_block", "{existing}"],
        ["exercise", "start", "residual_block", "{missing}/x.py"],
        ["exercise", "check", "no_such_exercise", "{existing}"],
        ["exercise", "train", "simple_resnet", "{missing}/x.py"],
    ],
    "mechanisms": [
        ["mechanisms", "shatter", "{huge_spec}"],
        ["mechanisms", "variance", "resnet20", "--out", "{existing}"],
        ["mechanisms", "variance", "resnet20", "--out", "{missing}/x.csv"],
        ["mechanisms", "paths", "plain20", "--images", "2", "--samples", "1"],
        ["mechanisms", "variance", "resnet20", "--out", "{new}.txt"],
        ["mechanisms", "study", "resnet20"],
        ["mechanisms", "study", "--depths", "21", "--out", "{new}"],
        ["mechanisms", "study", "{existing}", "--out", "{new}"],
        ["mechanisms", "study", "{cifar_pickle}", "--out", "{new}"],
        ["mechanisms", "study", "--out", "{existing}"],
    ],
    # `app` starts the server and hands it the flags; the pages it serves are driven one by
    # one in test_reliability.test_no_page_breaks_on_malformed_records.
    "app": [],
}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _copy(run: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    for entry in run.iterdir():
        (to / entry.name).write_bytes(entry.read_bytes())
    return to


def _saved(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, str]:
    """Paths of every hostile input, by name."""
    root = tmp_path_factory.mktemp("entry")
    good = tiny_run(root / "checkpoints")
    runs = good.parent
    paths = {"good": good, "runs": runs}
    paths["huge_status"] = _copy(good, runs / "huge-status")
    status = json.loads((good / "status.json").read_text())
    (paths["huge_status"] / "status.json").write_text(
        json.dumps({**status, "seconds": 1}).replace('"seconds": 1', '"seconds": ' + HUGE)
    )
    paths["listed_config"] = _copy(good, runs / "listed-config")
    checkpoint = torch.load(good / "best.pt", weights_only=True)
    (paths["listed_config"] / "best.pt").write_bytes(_saved({**checkpoint, "config": [1]}))
    paths["pickle_run"] = _copy(good, runs / "pickle")
    buffer = io.BytesIO()
    torch.save({"model": _Evil()}, buffer, pickle_module=__import__("pickle"))
    (paths["pickle_run"] / "best.pt").write_bytes(buffer.getvalue())
    paths["pickle"] = paths["pickle_run"] / "best.pt"
    paths["fifo_metrics"] = _copy(good, runs / "fifo-metrics")
    (paths["fifo_metrics"] / "metrics.jsonl").unlink()
    os.mkfifo(paths["fifo_metrics"] / "metrics.jsonl")
    paths["huge_loss"] = _copy(good, runs / "huge-loss")
    with open(paths["huge_loss"] / "metrics.jsonl", "w", encoding="utf-8") as stream:
        stream.write('{"event": "step", "step": 1, "epoch": 1, "loss": ' + HUGE + "}\n")
    spec = json.loads((good / "spec.json").read_text())
    huge_spec = {**spec, "widths": [8192, 8192, 8192]}
    paths["huge_spec"] = root / "huge.json"
    paths["huge_spec"].write_text(json.dumps(huge_spec))
    paths["huge_spec_run"] = _copy(good, runs / "huge-spec")
    (paths["huge_spec_run"] / "spec.json").write_text(json.dumps(huge_spec))
    paths["fifo_json"] = root / "fifo.json"
    os.mkfifo(paths["fifo_json"])
    shipped = shipped_root() / "degradation" / "resnet20"
    paths["cifar"] = _copy(shipped, runs / "cifar")
    shipped_checkpoint = torch.load(shipped / "best.pt", weights_only=True)
    paths["cifar_listed"] = _copy(shipped, runs / "cifar-listed")
    (paths["cifar_listed"] / "best.pt").write_bytes(_saved({**shipped_checkpoint, "config": [1]}))
    paths["cifar_pickle"] = _copy(shipped, runs / "cifar-pickle")
    (paths["cifar_pickle"] / "best.pt").write_bytes(buffer.getvalue())
    paths["existing"] = root / "existing.csv"
    paths["existing"].write_text("mine\n")
    paths["missing"] = root / "missing"
    paths["new"] = root / "new"
    return {name: str(path) for name, path in paths.items()}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (HEAVY_LIMIT, HEAVY_LIMIT))


def _run(argv: list[str], capsys) -> tuple[int, str]:
    if not argv[0].startswith("!"):
        code = main(argv)
        return code, capsys.readouterr().err
    argv = [argv[0][1:], *argv[1:]]
    done = subprocess.run(
        [sys.executable, "-m", "resnet_core", *argv],
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stderr


def _subcommands() -> set[str]:
    actions = build_parser()._subparsers._group_actions  # noqa: SLF001 - the test reads the parser
    return {name for action in actions for name in action.choices}


def test_every_subcommand_is_driven():
    assert set(CASES) == _subcommands()


@pytest.mark.parametrize(
    "argv", [case for cases in CASES.values() for case in cases], ids=lambda a: " ".join(a)[:60]
)
def test_a_hostile_input_ends_in_one_line_and_replaces_nothing(hostile, argv, capsys):
    argv = [part.format(**hostile) for part in argv]
    root = Path(hostile["good"]).parents[2]
    before = _digests(root)
    code, err = _run(argv, capsys)
    assert "Traceback" not in err, err
    if argv[0] != "runs" or "export" in argv:
        assert code in (1, 2), (argv, code, err)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, err
    after = _digests(root)
    assert {p: d for p, d in after.items() if p in before} == before  # nothing replaced
    assert not Path(hostile["new"]).exists() and not Path(hostile["missing"]).exists()
