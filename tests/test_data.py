"""CIFAR-10 readers, cache, subsets, synthetic data and the device-resident loader."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core.common.cifar import CIFAR10_MEAN, CIFAR10_STD
from resnet_core.training import data as data_module
from resnet_core.training.data import (
    DatasetNotFound,
    load_cifar10,
    stratified_subset,
    synthetic_cifar10,
)
from resnet_core.training.loader import DeviceLoader


def _write_image_folder(root: Path, classes=("cat", "dog"), per_class=(3, 2)) -> dict:
    """Tiny train/test image-folder tree; returns the pixels written per (split, class)."""
    rng = np.random.default_rng(0)
    written = {}
    for split, count in zip(("train", "test"), per_class):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")  # lossless
                written[(split, name, index)] = pixels
    return written


def test_image_folder_layout_and_cache(tmp_path, monkeypatch):
    written = _write_image_folder(tmp_path)
    dataset = load_cifar10(tmp_path)
    assert dataset.classes == ("cat", "dog")
    assert dataset.source == "image-folder" and not dataset.synthetic
    assert (
        dataset.train_images.shape == (6, 3, 32, 32) and dataset.train_images.dtype == torch.uint8
    )
    assert dataset.test_images.shape == (4, 3, 32, 32)
    assert dataset.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert dataset.train_labels.dtype == torch.int64
    first = dataset.train_images[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(first, written[("train", "cat", 0)])
    assert (tmp_path / "cifar10_uint8.pt").is_file()

    # The second load must come from the cache, never decode again.
    monkeypatch.setattr(data_module, "_decode", lambda files: pytest.fail("decoded twice"))
    again = load_cifar10(tmp_path)
    torch.testing.assert_close(again.train_images, dataset.train_images)


def test_class_names_from_folder_names_keep_only_harmless_characters(tmp_path):
    """Whoever names the folders names the classes every page shows: no Markdown or HTML."""
    _write_image_folder(tmp_path, classes=("![t](evil.example)", "<b>dog</b>"))
    names = load_cifar10(tmp_path).classes
    assert len(names) == 2
    for name in names:
        assert not set(name) & set("()<>!*`"), name


def test_cache_falls_back_to_user_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _write_image_folder(root)
    (root / "cifar10_uint8.pt").mkdir()  # cannot be replaced by a file: acts as read-only
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_cifar10(root)
    cached = list((tmp_path / "cache" / "resnet_explorer").glob("cifar10_*.pt"))
    assert len(cached) == 1
    monkeypatch.setattr(data_module, "_decode", lambda files: pytest.fail("decoded twice"))
    assert len(load_cifar10(root).test_labels) == 4


def _write_batches_py(root: Path, per_batch: int = 20) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"data": pixels, b"labels": labels}, handle)
        first = pixels if first is None else first
    names = [n.encode() for n in data_module.CIFAR10_CLASSES]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, handle)
    return first


def test_torchvision_batches_layout(tmp_path):
    first = _write_batches_py(tmp_path)
    dataset = load_cifar10(tmp_path)
    assert dataset.source == "cifar-10-batches-py"
    assert dataset.train_images.shape == (100, 3, 32, 32)
    assert dataset.test_images.shape == (20, 3, 32, 32)
    assert dataset.classes == data_module.CIFAR10_CLASSES
    np.testing.assert_array_equal(dataset.train_images[0].reshape(-1).numpy(), first[0])


def test_batches_with_foreign_pickle_are_refused(tmp_path):
    _write_batches_py(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump(Evil(), handle)
    with pytest.raises(DatasetNotFound, match="test_batch"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_missing_data_says_how_to_fix(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        load_cifar10(tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message
    for hint in ("--data-dir", "RESNET_EXPLORER_DATA", "download=True", "tar -xzf", "synthetic"):
        assert hint in message
    assert isinstance(info.value, ValueError)


def test_stratified_subset_takes_first_per_class():
    dataset = synthetic_cifar10(num_train=200, num_test=20)
    subset = stratified_subset(dataset, 50)
    assert torch.bincount(subset.train_labels, minlength=10).tolist() == [5] * 10
    for label in range(10):
        expected = torch.nonzero(dataset.train_labels == label).flatten()[:5]
        torch.testing.assert_close(
            subset.train_images[subset.train_labels == label], dataset.train_images[expected]
        )
    assert len(subset.test_labels) == 20
    with pytest.raises(ValueError, match="subset"):
        stratified_subset(dataset, 0)


def test_synthetic_is_flagged_and_deterministic():
    one, two = synthetic_cifar10(100, 10, seed=3), synthetic_cifar10(100, 10, seed=3)
    assert one.synthetic and one.source == "synthetic"
    torch.testing.assert_close(one.train_images, two.train_images)
    assert torch.bincount(one.train_labels).tolist() == [10] * 10


def test_loader_flip_rate_is_half():
    images = torch.zeros(4000, 3, 32, 32, dtype=torch.uint8)
    images[..., :16] = 255  # bright left half: a flip moves it to the right
    loader = DeviceLoader(images, torch.zeros(4000, dtype=torch.int64), 500, crop_padding=0)
    flipped = seen = 0
    for batch, _labels in loader:
        flipped += int((batch[..., 16:].mean((1, 2, 3)) > batch[..., :16].mean((1, 2, 3))).sum())
        seen += len(batch)
    assert seen == 4000
    assert 0.45 < flipped / seen < 0.55


def test_loader_crops_shift_content():
    images = torch.zeros(2000, 1, 32, 32, dtype=torch.uint8)
    images[:, :, 16, 16] = 255  # one bright pixel: its position reveals the crop offset
    loader = DeviceLoader(
        images, torch.zeros(2000, dtype=torch.int64), 250, flip=False, mean=(0.0,), std=(1.0,)
    )
    offsets = []
    for batch, _labels in loader:
        flat = batch.flatten(1).argmax(1)
        offsets.append(torch.stack([flat // 32 - 16, flat % 32 - 16], 1))
    offsets = torch.cat(offsets)
    assert offsets.abs().max() == 4
    assert set(offsets[:, 0].tolist()) == set(range(-4, 5))
    assert (offsets == 0).all(1).float().mean() < 0.05  # 1/81 expected


def test_loader_normalises_and_keeps_labels_with_images():
    dataset = synthetic_cifar10(num_train=640, num_test=100)
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1) * 255
    constant = mean.round().to(torch.uint8).expand(4, 3, 32, 32).contiguous()
    batch, _ = next(iter(DeviceLoader(constant, torch.zeros(4, dtype=torch.int64), 4, train=False)))
    assert batch.abs().max() < 0.5 / 255 / min(CIFAR10_STD)
    loader = DeviceLoader(
        dataset.train_images,
        dataset.train_labels,
        64,
        seed=1,
        crop_padding=0,
        flip=False,
        channels_last=True,
    )
    order = []
    for batch, labels in loader:
        assert batch.is_contiguous(memory_format=torch.channels_last)
        order.append(labels)
    assert sorted(torch.cat(order).tolist()) == sorted(dataset.train_labels.tolist())
    loader.set_epoch(1)
    first = [labels for _b, labels in loader]
    loader.set_epoch(1)
    again = [labels for _b, labels in loader]
    loader.set_epoch(2)
    other = [labels for _b, labels in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_real_cifar_statistics(cifar_root):
    dataset = load_cifar10(cifar_root)
    assert dataset.train_images.shape == (50000, 3, 32, 32)
    assert dataset.test_images.shape == (10000, 3, 32, 32)
    assert dataset.classes == data_module.CIFAR10_CLASSES
    assert torch.bincount(dataset.test_labels).tolist() == [1000] * 10
    loader = DeviceLoader(dataset.test_images, dataset.test_labels, 5000, train=False)
    batches = torch.cat([batch for batch, _ in loader])
    per_channel = batches.mean((0, 2, 3))
    assert per_channel.abs().max() < 0.1
    assert (batches.std((0, 2, 3)) - 1).abs().max() < 0.1
    subset = load_cifar10(cifar_root, subset=1000)
    assert torch.bincount(subset.train_labels).tolist() == [100] * 10
