"""benchmarks/speedrun.py and benchmarks/airbench_side.py on a CPU: airbench's data files,
its subprocess (with a stand-in airbench package), and a tiny speedrun end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from resnet_core.training.data import Cifar10, load_cifar10

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import airbench_side  # noqa: E402
import speedrun  # noqa: E402


@pytest.fixture(scope="module")
def tiny(cifar_root) -> Cifar10:
    """20 training and 10 test images of our loader."""
    data = load_cifar10(cifar_root)
    return Cifar10(
        data.train_images[:20].clone(),
        data.train_labels[:20].clone(),
        data.test_images[:10].clone(),
        data.test_labels[:10].clone(),
        data.classes,
        data.source,
    )


def test_airbench_files_hold_our_images_in_its_layout(tiny, tmp_path):
    airbench_side.write_airbench_data(tiny, tmp_path)
    for split in ("train", "test"):
        stored = torch.load(tmp_path / f"{split}.pt", weights_only=True)
        images = getattr(tiny, f"{split}_images")  # (N, 3, 32, 32)
        assert stored["images"].dtype == torch.uint8
        assert stored["images"].shape == (len(images), 32, 32, 3)
        assert torch.equal(stored["images"], images.permute(0, 2, 3, 1))
        assert torch.equal(stored["images"][3, 5, 7], images[3, :, 5, 7])  # one pixel's RGB
        assert stored["labels"].dtype == torch.int64
        assert torch.equal(stored["labels"], getattr(tiny, f"{split}_labels"))
        assert stored["classes"] == list(tiny.classes)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["test.pt", "train.pt"]


def test_airbench_files_replace_only_our_own(tiny, tmp_path):
    airbench_side.write_airbench_data(tiny, tmp_path)
    airbench_side.write_airbench_data(tiny, tmp_path)  # ours: replaced
    foreign = {"images": torch.zeros(1, 32, 32, 3, dtype=torch.uint8), "labels": torch.zeros(1)}
    torch.save(foreign, tmp_path / "test.pt")
    before = (tmp_path / "test.pt").read_bytes()
    with pytest.raises(airbench_side.ForeignFiles, match="test.pt"):
        airbench_side.write_airbench_data(tiny, tmp_path)
    assert (tmp_path / "test.pt").read_bytes() == before
    (tmp_path / "train.pt").write_text("not a tensor file")
    with pytest.raises(airbench_side.ForeignFiles, match="train.pt"):
        airbench_side.write_airbench_data(tiny, tmp_path)
    assert (tmp_path / "train.pt").read_text() == "not a tensor file"


def test_airbench_is_skipped_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = airbench_side.run_airbench(tmp_path, [0, 1], tmp_path / "none.tar.gz", timeout=5)
    assert result["status"] == "skipped"
    assert result["reason"] == "no CUDA"
    assert result["runs"] == []


# A stand-in for airbench with its interface (CifarLoader reading cifar10/*.pt relative to
# the working folder, warmup94, train94 printing its table, evaluate), runnable on a CPU.
FAKE_AIRBENCH = """
import os
import torch
torch.cuda.synchronize = lambda *args: None

class CifarLoader:
    def __init__(self, path, train=True, batch_size=500, **kwargs):
        name = "train.pt" if train else "test.pt"
        data = torch.load(os.path.join(path, name), weights_only=True)
        self.images, self.labels = data["images"], data["labels"]

def warmup94():
    print("warming up")

def train94():
    loader = CifarLoader("cifar10")
    print("|  run   |  epoch  |  train_loss  |  train_acc  |  val_acc  |  tta_val_acc  |  total_time_seconds  |")
    print("|        |   eval  |      0.1000  |     0.9000  |   0.9000  |       0.9300  |              %.4f  |"
          % (3 + torch.rand(()).item()))
    return int(loader.labels.sum()) + len(loader.labels)

def evaluate(model, loader, tta_level=0):
    return model / 1000 + tta_level / 100 + int(loader.labels.sum()) / 1e6
"""


def _fake_sdist(tmp_path: Path) -> Path:
    package = tmp_path / "src" / "airbench-0.1.8" / "airbench"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_AIRBENCH)
    sdist = tmp_path / "airbench-0.1.8.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(package.parent, arcname="airbench-0.1.8")
    return sdist


def test_airbench_runs_in_a_subprocess_on_our_files(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    data = airbench_side.write_airbench_data(tiny, tmp_path / "data")
    result = airbench_side.run_airbench(data, [0, 1], _fake_sdist(tmp_path), timeout=120)
    assert result["status"] == "ok", result["log_tail"]
    assert [run["seed"] for run in result["runs"]] == [0, 1]
    model = int(tiny.train_labels.sum()) + len(tiny.train_labels)
    expected = model / 1000 + 0.02 + int(tiny.test_labels.sum()) / 1e6  # tta_level 2
    for run in result["runs"]:
        assert run["accuracy"] == pytest.approx(expected)
        assert 3 <= run["seconds"] <= 4  # the final row's own time
        assert run["printed_tta_accuracy"] == pytest.approx(0.93)
        assert run["wall_seconds"] >= 0
    assert result["runs"][0]["seconds"] != result["runs"][1]["seconds"]  # seeded apart


def test_airbench_final_row_is_read_from_its_table():
    table = (
        "|  run   |  epoch  |  train_loss  |  train_acc  |  val_acc  |  tta_val_acc  |  total  |\n"
        "|     0  |      1  |      1.0000  |     0.5000  |   0.6000  |               |  1.0000 |\n"
        "|        |   eval  |      0.1000  |     0.9000  |   0.9300  |       0.9412  |  3.8321 |\n"
        "-------------------------\n"
    )
    assert airbench_side.final_row(table) == (3.8321, 0.9412)
    assert airbench_side.final_row("no table") == (None, None)


def _run(seed: int, accuracies: list[float]) -> dict:
    epochs = [
        {"epoch": i + 1, "test_acc": acc, "train_seconds": 2.0 * (i + 1)}
        for i, acc in enumerate(accuracies)
    ]
    return {"seed": seed, "epochs": epochs, "time_to_target_s": speedrun.time_to(epochs, 0.94)}


def test_airbench_shortfall_moves_the_target_down():
    runs = [_run(0, [0.90, 0.937, 0.941]), _run(1, [0.91, 0.936, 0.939])]
    result = {"target": 0.94, "variants": [{"runs": runs, "median": {}}]}
    result["airbench"] = {"runs": [{"accuracy": a} for a in (0.935, 0.936, 0.930)]}
    speedrun._adjust(result)
    assert result["jpeg_gap"] == pytest.approx(0.005)
    assert result["adjusted_target"] == pytest.approx(0.935)
    assert [run["time_to_adjusted_target_s"] for run in runs] == [4.0, 4.0]
    assert [run["time_to_target_s"] for run in runs] == [6.0, None]
    assert result["variants"][0]["median"]["time_to_adjusted_target_s"] == 4.0
    assert "median on this copy is 93.50%" in speedrun._gap_sentence(result)
    assert "moves to 93.50%" in speedrun._gap_sentence(result)
    assert speedrun.summarize([dict(r, best_acc=0.9, final_acc=0.9) for r in runs]) == {
        "best_acc": 0.9,
        "final_acc": 0.9,
        "train_seconds": None,
        "s_per_epoch": None,
        "time_to_target_s": None,  # one seed of two never reached it
        "reached": "1/2",
    }


def test_airbench_above_its_published_accuracy_leaves_the_target():
    result = {"target": 0.94, "variants": [], "airbench": {"runs": [{"accuracy": 0.942}]}}
    speedrun._adjust(result)
    assert result["jpeg_gap"] == pytest.approx(-0.002)
    assert result["adjusted_target"] == 0.94
    assert "target unchanged" in speedrun._gap_sentence(result)


def test_no_airbench_measurement_leaves_the_target():
    result = {"target": 0.94, "variants": [], "airbench": {"status": "skipped", "runs": []}}
    speedrun._adjust(result)
    assert result["jpeg_gap"] is None and result["adjusted_target"] is None


def test_speedrun_end_to_end_on_cpu(cifar_root, tmp_path):
    out = tmp_path / "r20.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "speedrun.py"), "--preset", "resnet20"]
    command += ["--device", "cpu", "--no-compile", "--epochs", "1", "--subset", "256"]
    command += ["--seeds", "1", "--data-dir", str(cifar_root), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| resnet20 | full recipe | 0 |" in done.stdout
    assert "| resnet20 | full recipe | median | 0/1 |" in done.stdout
    result = json.loads(out.read_text())
    for key in ("preset", "target", "versions", "hardware", "date", "command", "variants"):
        assert key in result
    assert result["target"] == 0.9125 and result["hardware"].startswith("CPU")
    assert set(result["versions"]) == {"torch", "python", "cuda"}
    assert "--subset 256" in result["command"]
    assert result["airbench"] is None and result["jpeg_gap"] is None
    assert result["partial"] is False
    (variant,) = result["variants"]
    assert variant["name"] == "full recipe"
    assert variant["config"]["device"] == "cpu" and variant["config"]["compile"] is False
    assert variant["config"]["eval_every"] == 1 and variant["config"]["subset"] == 256
    (run,) = variant["runs"]
    assert run["state"] == "done" and run["epochs_run"] == 1
    assert 0.0 <= run["best_acc"] <= 1.0 and run["train_seconds"] > 0
    assert run["s_per_epoch"] == pytest.approx(run["train_seconds"], rel=0.01)
    assert run["time_to_target_s"] is None  # one epoch on 256 images is far from 91.25 %
    assert result["table"] in done.stdout
    recorded = out.read_text()
    assert str(cifar_root) not in recorded and str(tmp_path) not in recorded  # no machine paths
    assert "r20.json" in result["command"]


def test_ablation_takes_each_ingredient_out_once():
    recipe = speedrun.SPEEDRUNS["resnet18"]
    variants = speedrun._variants(recipe, ablation=True)
    assert variants[0] == (speedrun.FULL, ())
    assert [without for _, without in variants[1:]] == [(i.name,) for i in recipe.ingredients]
    assert speedrun._variants(recipe, ablation=False) == [(speedrun.FULL, ())]
    args = speedrun._parser().parse_args(["--device", "cpu", "--no-compile", "--epochs", "2"])
    config = recipe.train_config(("CUDA graphs",), **speedrun._changes(args))
    assert (config.device, config.compile, config.epochs, config.eval_every) == ("cpu", False, 2, 1)


def test_table_shows_airbench_and_the_moved_target(tmp_path):
    runs = [
        dict(_run(0, [0.93, 0.937]), best_acc=0.937, final_acc=0.937, train_seconds=4.0),
        dict(_run(1, [0.92, 0.941]), best_acc=0.941, final_acc=0.941, train_seconds=4.2),
    ]
    for run in runs:
        run["s_per_epoch"] = run["train_seconds"] / 2
    variant = {"name": speedrun.FULL, "runs": runs, "median": speedrun.summarize(runs)}
    airbench = {"version": "0.1.8", "status": "ok", "reason": "", "runs": []}
    for seed, accuracy in enumerate((0.935, 0.936, 0.934)):
        airbench["runs"].append(
            {"seed": seed, "accuracy": accuracy, "seconds": 3.5, "wall_seconds": 5.0}
        )
    (tmp_path / "r18.json").write_text(json.dumps({"airbench": airbench}))
    args = speedrun._parser().parse_args(["--jpeg-gap-from", str(tmp_path / "r18.json")])
    result = {"preset": "resnet18", "target": 0.94, "variants": [variant]}
    result["airbench"] = speedrun._airbench(args, data=None)
    speedrun._adjust(result)
    text = speedrun.table(result)
    assert "| reached 94.00% | time to target (s) | time to 93.50% (s) |" in text
    assert "| resnet18 | full recipe | 0 | no | - | 4.00 | 0.9370 |" in text
    assert "| resnet18 | full recipe | 1 | yes | 4.00 | 4.00 | 0.9410 |" in text
    assert "| resnet18 | full recipe | median | 1/2 | - | 4.00 | 0.9390 |" in text
    assert "| 1 | 0.9360 | 3.50 | 5.00 |" in text
    assert "measured by the run in" in text and "moves to 93.50%" in text
