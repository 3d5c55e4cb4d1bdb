"""Bad data folders: one clear error naming the file and what is wrong, in the library, the
CLI and the app; the sidebar says "found" only for a folder that holds a dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from app_helpers import app_test, no_exceptions
from PIL import Image

from resnet_core.cli.main import main
from resnet_core.training.data import BATCH_FILES, DatasetNotFound, cifar10_layout, load_cifar10

CLASSES = ("cat", "dog")


def _image_folder(root, per_class: int = 3):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.jpg", quality=75)
    return root


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(1).bytes(2000))


def _truncated(path):
    path.write_bytes(path.read_bytes()[:200])


def _empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_random_bytes, _truncated, _empty])
def test_bad_image_names_the_file(tmp_path, damage):
    root = _image_folder(tmp_path / "data")
    bad = root / "train" / "dog" / "1.jpg"
    damage(bad)
    with pytest.raises(DatasetNotFound) as caught:
        load_cifar10(root)
    message = str(caught.value)
    assert str(bad) in message and "not a readable image" in message and "\n" not in message
    assert not (root / "cifar10_uint8.pt").exists()  # nothing cached from a broken folder


def test_cli_train_on_a_bad_image_is_one_line(tmp_path, capsys):
    root = _image_folder(tmp_path / "data")
    _random_bytes(root / "test" / "cat" / "0.jpg")
    code = main(["train", "--data-dir", str(root), "--runs-root", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "0.jpg" in err and "Traceback" not in err and len(err.splitlines()) == 1


def _batches(root, **override):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = {b"data": np.zeros((10, 3072), dtype=np.uint8), b"labels": list(range(10))}
    for name in BATCH_FILES:
        (folder / name).write_bytes(pickle.dumps(override.get(name, good)))
    return folder


@pytest.mark.parametrize(
    "batch, words",
    [
        ({b"labels": [1, 2]}, "no data"),
        ({b"data": np.zeros((10, 3072), dtype=np.uint8)}, "no labels"),
        ({b"data": np.zeros((10, 100), dtype=np.uint8), b"labels": [0] * 10}, "shape"),
        ({b"data": np.zeros((10, 3072), dtype=np.uint8), b"labels": [0] * 9}, "9 labels"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 42]}, "labels outside"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_bad_python_batch_names_the_file(tmp_path, batch, words):
    folder = _batches(tmp_path, data_batch_3=batch)
    with pytest.raises(DatasetNotFound) as caught:
        load_cifar10(tmp_path)
    assert str(folder / "data_batch_3") in str(caught.value) and words in str(caught.value)


def test_layout_is_found_only_where_a_dataset_is(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    (tmp_path / "empty" / "train" / "cat").mkdir()
    assert cifar10_layout(tmp_path / "empty") is None
    assert cifar10_layout(_image_folder(tmp_path / "images")) == "image-folder"
    folder = _batches(tmp_path / "batches")
    assert cifar10_layout(tmp_path / "batches") == "cifar-10-batches-py"
    (folder / "test_batch").unlink()
    assert cifar10_layout(tmp_path / "batches") is None


def _app(tmp_path, monkeypatch, data):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(data))
    at = app_test()
    at.run()
    return at


def test_sidebar_does_not_call_an_empty_folder_found(tmp_path, monkeypatch):
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "test").mkdir()
    at = _app(tmp_path, monkeypatch, tmp_path / "data")
    assert no_exceptions(at) == []
    assert any("CIFAR-10:** not found" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/gradients.py").run()
    assert no_exceptions(at) == []


def test_gradient_flow_on_a_damaged_folder_is_an_inline_error(tmp_path, monkeypatch):
    root = _image_folder(tmp_path / "data")
    _truncated(root / "test" / "dog" / "2.jpg")
    at = _app(tmp_path, monkeypatch, root)
    assert any("CIFAR-10:** found" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/gradients.py").run()
    assert at.radio(key="grad_source").value == "CIFAR-10"
    assert no_exceptions(at) == []
    assert any("2.jpg" in e.value for e in at.error)
