"""Which images a measurement looks at: `stratified_indices` draws across every class, seeded,
and every shipped result folder records its images as sample.json, covering all classes."""

from __future__ import annotations

import pytest
import torch

from resnet_core.analysis.sampling import (
    SAMPLE_FILE,
    classes_in,
    sample_record,
    sample_text,
    stratified_indices,
    write_sample,
)
from resnet_core.common.files import read_json
from resnet_core.training.data import load_cifar10
from resnet_core.training.experiment_runner import training_sample
from resnet_core.training.experiments import shipped_root

LABELS = torch.arange(1000) // 100  # sorted by class, like an image-folder split
SHIPPED_SAMPLES = sorted(shipped_root().rglob(SAMPLE_FILE))
MUST_RECORD = sorted(path.name for path in shipped_root().iterdir() if path.is_dir())


def test_even_per_class_with_the_remainder_spread_by_the_seed():
    picks = stratified_indices(LABELS, 500, seed=0)
    assert torch.bincount(LABELS[picks]).tolist() == [50] * 10
    assert picks.tolist() == sorted(set(picks.tolist()))  # sorted, no repeats
    odd = torch.bincount(LABELS[stratified_indices(LABELS, 23, seed=0)], minlength=10)
    assert sorted(odd.tolist()) == [2] * 7 + [3] * 3


def test_seeded_repeatable_and_not_the_first_images():
    picks = stratified_indices(LABELS, 50, seed=3)
    assert torch.equal(picks, stratified_indices(LABELS, 50, seed=3))
    assert not torch.equal(picks, stratified_indices(LABELS, 50, seed=4))
    first = torch.cat([torch.arange(c * 100, c * 100 + 5) for c in range(10)])
    assert not torch.equal(picks, first)  # a random pick within each class


def test_exclude_is_honoured():
    taken = stratified_indices(LABELS, 500, seed=0)
    rest = stratified_indices(LABELS, 500, seed=0, exclude=taken)
    assert not set(taken.tolist()) & set(rest.tolist())
    assert sorted(taken.tolist() + rest.tolist()) == list(range(1000))  # every image, once


def test_too_few_or_no_images_raise():
    with pytest.raises(ValueError, match="class"):
        stratified_indices(LABELS, 1010, seed=0)
    with pytest.raises(ValueError, match="class"):
        stratified_indices(LABELS, 20, seed=0, exclude=torch.arange(99))  # class 0: 1 left
    with pytest.raises(ValueError, match="positive"):
        stratified_indices(LABELS, 0, seed=0)


def test_sample_record_and_classes_in():
    picks = stratified_indices(LABELS, 20, seed=7)
    record = sample_record("test", picks, 7, dataset="image-folder")
    assert record == {
        "split": "test",
        "indices": picks.tolist(),
        "how": "stratified, seed 7",
        "dataset": "image-folder",
    }
    assert classes_in(LABELS, record["indices"]) == 10
    assert classes_in(LABELS, list(range(20))) == 1  # the first 20: one class only


def test_sample_file_keeps_the_indices_on_one_line(tmp_path):
    record = sample_record("train", torch.arange(0, 1000, 7), 2, dataset="synthetic")
    write_sample(tmp_path / "sample.json", record)
    assert read_json(tmp_path / "sample.json") == record
    assert len(sample_text(record).splitlines()) == len(record) + 2  # braces, then a key a line


def test_trained_runs_name_the_whole_test_split_and_their_training_images():
    config = {"dataset": "synthetic", "subset": 60, "seed": 1}
    record = training_sample(config)
    assert record["split"] == "test" and record["dataset"] == "synthetic"
    assert record["indices"] == list(range(len(record["indices"]))) and record["indices"]
    assert record["train"] == {"images": 60, "how": "the whole training split"}


def test_a_cifar_subset_says_which_training_images(cifar_root):
    record = training_sample({"dataset": "cifar10", "subset": 100, "data_dir": cifar_root})
    assert record["indices"] == list(range(10_000))
    assert record["train"]["images"] == 100
    assert record["train"]["how"].startswith("the first 10 training images of each class")


@pytest.mark.parametrize("name", ["degradation", "grad_flow", "grad_flow56"])
def test_shipped_training_samples_are_what_their_runs_used(name, cifar_root):
    """Recomputed from the first run's config: a re-ship with another subset fails here."""
    folder = shipped_root() / name
    first = read_json(folder / "experiment.json")["runs"][0]["run"]
    config = {**read_json(folder / first / "config.json"), "data_dir": cifar_root}
    assert read_json(folder / SAMPLE_FILE) == training_sample(config)


@pytest.mark.parametrize("name", MUST_RECORD)
def test_measured_shipped_results_record_their_sample(name):
    assert (shipped_root() / name / SAMPLE_FILE).is_file(), f"{name}/ has no {SAMPLE_FILE}"


@pytest.fixture(scope="module")
def cifar(cifar_root):
    return load_cifar10(cifar_root)


@pytest.mark.parametrize(
    "path", SHIPPED_SAMPLES, ids=lambda p: str(p.parent.relative_to(shipped_root()))
)
def test_every_shipped_sample_covers_all_ten_classes(path, cifar):
    sample = read_json(path)
    assert sample["split"] in ("test", "train") and sample["how"], path
    labels = cifar.test_labels if sample["split"] == "test" else cifar.train_labels
    if "dataset" in sample:  # the indices count in this copy's order
        assert sample["dataset"] == cifar.source, path
    indices = sample["indices"]
    assert len(set(indices)) == len(indices) and 0 <= min(indices) <= max(indices) < len(labels)
    assert classes_in(labels, indices) == 10, path
