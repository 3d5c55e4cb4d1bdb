"""Looking inside a trained net: confusion matrix, per-class accuracy, galleries, the
augmentation pictures, image grids, and one shipped run tested on the real CIFAR-10."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet_core.analysis.inspect import (
    class_samples,
    confusion_matrix,
    gallery,
    per_class_accuracy,
    row_normalised,
)
from resnet_core.studies import datasets
from resnet_core.training.data import load_cifar10, synthetic_cifar10
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import RunError, read_metrics
from resnet_core.views import inspect as views


def _random_probs(count: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(count, classes, generator=generator)
    labels = torch.randint(0, classes, (count,), generator=generator)
    return logits.softmax(1), labels


def test_confusion_matrix_rows_diagonal_and_normalised_rows():
    probs, labels = _random_probs(500, 7, seed=1)
    preds = probs.argmax(1)
    matrix = confusion_matrix(labels, preds, 7)
    assert matrix.dtype == torch.int64 and matrix.shape == (7, 7)
    assert torch.equal(matrix.sum(1), torch.bincount(labels, minlength=7))
    assert torch.equal(matrix.sum(0), torch.bincount(preds, minlength=7))
    assert int(matrix.diagonal().sum()) == int((preds == labels).sum())
    shares = row_normalised(matrix)
    torch.testing.assert_close(shares.sum(1), torch.ones(7, dtype=torch.float64))


def test_empty_class_row_stays_zero():
    matrix = confusion_matrix(torch.tensor([0, 0, 2]), torch.tensor([0, 2, 2]), 3)
    assert row_normalised(matrix)[1].sum() == 0
    frame = per_class_accuracy(matrix, ["a", "b", "c"])
    assert frame.loc[1, "total"] == 0 and frame["accuracy"].isna()[1]


def test_per_class_accuracy_on_a_hand_made_example():
    # class 0: 2 of 3 right (once taken for 1); class 1: 2 of 2; class 2: 0 of 1 (taken for 0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 0, 1, 1, 0])
    frame = per_class_accuracy(confusion_matrix(labels, preds, 3), ["cat", "dog", "frog"])
    assert list(frame["correct"]) == [2, 2, 0]
    assert list(frame["total"]) == [3, 2, 1]
    assert list(frame["most_confused_with"]) == ["dog", "", "cat"]
    for label in range(3):  # against a direct computation
        mine = labels == label
        expected = float((preds[mine] == label).float().mean())
        assert frame.loc[label, "accuracy"] == pytest.approx(expected)
    assert frame.loc[0, "confused_share"] == pytest.approx(1 / 3)


def test_accuracy_story_is_computed_from_the_matrix():
    labels = torch.tensor([0] * 10 + [1] * 10)
    preds = torch.tensor([0] * 9 + [1] + [1] * 4 + [0] * 6)  # class 1: 40 % right, 60 % as 0
    matrix = confusion_matrix(labels, preds, 2)
    text = views.accuracy_story(per_class_accuracy(matrix, ["cat", "dog"]), matrix)
    assert "**dog** is the hardest class: 40 % of its images right" in text
    assert "most often taken for **cat** (60 %)" in text
    assert "dog taken for cat, 6 times" in text
    assert "Overall **65.0 %**" in text


def test_gallery_of_confident_mistakes_and_unsure_hits():
    probs, labels = _random_probs(400, 5, seed=2)
    confidence, preds = probs.max(1)
    mistakes = gallery(probs, labels, "confident_mistakes", count=30)
    assert len(mistakes) == 30
    assert bool((preds[mistakes] != labels[mistakes]).all())
    assert bool((confidence[mistakes].diff() <= 0).all())
    assert float(confidence[mistakes[0]]) == float(confidence[preds != labels].max())
    hits = gallery(probs, labels, "unsure_hits", count=30)
    assert bool((preds[hits] == labels[hits]).all())
    assert bool((confidence[hits].diff() >= 0).all())
    assert float(confidence[hits[0]]) == float(confidence[preds == labels].min())
    for kind in ("confident_mistakes", "unsure_hits"):
        only_two = gallery(probs, labels, kind, klass=2, count=1000)
        assert len(only_two) and bool((labels[only_two] == 2).all())
    everything = gallery(probs, labels, "confident_mistakes", count=10_000)
    assert len(everything) == int((preds != labels).sum())
    with pytest.raises(ValueError, match="kind"):
        gallery(probs, labels, "best")


def test_gallery_story_counts_the_pool_it_was_drawn_from():
    probs, labels = _random_probs(300, 4, seed=3)
    shown = gallery(probs, labels, "confident_mistakes", klass=1, count=5)
    text = views.gallery_story(probs, labels, shown, "confident_mistakes", 1, list("abcd"))
    wrong = int(((probs.argmax(1) != labels) & (labels == 1)).sum())
    assert f"gets {wrong:,} of the {int((labels == 1).sum()):,} b test images wrong" in text
    frame = views.gallery_frame(probs, labels, shown, list("abcd"))
    assert list(frame["test_index"]) == shown.tolist() and set(frame["true"]) == {"b"}


def test_class_samples_equal_per_class_and_seeded():
    labels = torch.tensor([0] * 20 + [1] * 3 + [3] * 9)  # class 2 absent, class 1 has 3
    picks, shown = class_samples(labels, per_class=5, seed=0, num_classes=4)
    assert shown == [0, 1, 3]
    assert labels[picks].tolist() == [0, 0, 0, 1, 1, 1, 3, 3, 3]  # 3 each: the smallest class
    again, _ = class_samples(labels, per_class=5, seed=0, num_classes=4)
    other, _ = class_samples(labels, per_class=5, seed=1, num_classes=4)
    assert torch.equal(picks, again) and not torch.equal(picks, other)


def test_augmented_samples_are_the_training_augmentation():
    images = synthetic_cifar10(num_train=40, num_test=10, seed=0).train_images[:24]
    first = views.augmented_samples(images, seed=0)
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert not torch.equal(first, views.augmented_samples(images, seed=1))
    assert torch.equal(first, views.augmented_samples(images, seed=0))
    assert not torch.equal(first, images)
    plain = views.augmented_samples(images, seed=0, crop_padding=0, flip=False)
    assert torch.equal(plain, images)
    flipped = views.augmented_samples(images, seed=3, crop_padding=0, flip=True)
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images)]
    same = [torch.equal(a, b) for a, b in zip(flipped, images)]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)


def test_image_grid_enlarges_with_nearest_pixels_and_labels_rows():
    images = torch.randint(
        0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    png = views.image_grid(images, columns=3, scale=4)
    grid = Image.open(io.BytesIO(png)).convert("RGB")
    assert grid.width >= 3 * 32 and grid.height >= 2 * 32
    pixel = images[0, :, 1, 2].tolist()  # row 1, column 2 -> a 4x4 block at (8..11, 4..7)
    assert [list(grid.getpixel((x, y))) for x in (8, 11) for y in (4, 7)] == [pixel] * 4
    labelled = Image.open(io.BytesIO(views.image_grid(images, 3, 4, row_labels=["cat", "dog"])))
    captioned = views.image_grid(images, 3, 4, captions=["a\nb"] * 6)
    assert labelled.width > grid.width
    assert Image.open(io.BytesIO(captioned)).height > grid.height


def test_run_test_set_follows_the_recorded_dataset(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"dataset": "synthetic", "subset": 200, "seed": 3})
    )
    assert datasets.run_test_set(tmp_path) == datasets.TestSet("synthetic", 200, 3)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="config.json"):
        datasets.run_test_set(tmp_path)


def _shipped(name: str) -> Path:
    return shipped_root() / "degradation" / name


@pytest.mark.slow
def test_shipped_run_tested_now_matches_its_recorded_best_epoch(cifar_root):
    run = _shipped("resnet20")
    data = load_cifar10(cifar_root)
    probs = views.run_predictions(run, data)
    assert probs.shape == (len(data.test_labels), 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(probs)))
    accuracy = float((probs.argmax(1) == data.test_labels).float().mean())
    recorded = max(r["test_acc"] for r in read_metrics(run) if r.get("event") == "epoch")
    assert abs(accuracy - recorded) <= 0.005, (accuracy, recorded)  # the run evaluated in bf16
    matrix = confusion_matrix(data.test_labels, probs.argmax(1), 10)
    assert int(per_class_accuracy(matrix, data.classes)["correct"].sum()) == round(
        accuracy * len(data.test_labels)
    )


def test_run_predictions_refuses_a_net_with_other_classes():
    run = _shipped("resnet20")
    data = synthetic_cifar10(num_train=20, num_test=10, num_classes=4)
    with pytest.raises(RunError, match="10 classes"):
        views.run_predictions(run, data)
