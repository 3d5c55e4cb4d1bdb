"""He et al. 2016, Fig. 7 of an experiment: the layer responses of its trained runs.

The experiment layer_responses trains nothing: it measures the std of every BatchNorm output
(`resnet_core.analysis.probes.layer_responses`, BatchNorm in eval mode) of the trained
degradation runs on the probe images (PROBE_IMAGES test images, the same number of each
class, picked with PROBE_SEED), and writes them to `RESPONSES_FILE` in its folder, with the
pick beside them as `resnet_core.analysis.sampling.SAMPLE_FILE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from resnet_core.analysis.probes import PROBE_IMAGES, PROBE_SEED, layer_responses
from resnet_core.analysis.sampling import sample_record, stratified_indices
from resnet_core.common.files import read_json
from resnet_core.training.data import Cifar10, load_dataset
from resnet_core.training.experiments import RunPlan
from resnet_core.training.loader import DeviceLoader
from resnet_core.training.runs import load_run

__all__ = ["RESPONSES_FILE", "measure_responses", "probe_images"]

RESPONSES_FILE = "responses.csv"


def measure_responses(
    source: Path, runs: Sequence[RunPlan], data_dir: str | None, device: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Layer responses of each of `runs` trained in `source`, on the probe images; and the
    record of those images (what `SAMPLE_FILE` holds)."""
    record = read_json(source / "experiment.json")
    recipe = record.get("recipe") if isinstance(record, dict) else None
    dataset_name = recipe.get("dataset", "cifar10") if isinstance(recipe, dict) else "cifar10"
    images, sample = probe_images(load_dataset(dataset_name, data_dir))
    frames = []
    for plan in runs:
        model, _ = load_run(source / plan.label, which="best")
        model = model.to(device)
        frame = layer_responses(model, images.to(device))
        frame.insert(0, "model", plan.label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), sample


def probe_images(
    dataset: Cifar10, size: int = PROBE_IMAGES, seed: int = PROBE_SEED
) -> tuple[torch.Tensor, dict[str, Any]]:
    """`size` normalised test images, the same number of each class, picked with `seed`;
    and the record of the pick (split, indices, how, and which copy of the data)."""
    picks = stratified_indices(dataset.test_labels, size, seed)
    loader = DeviceLoader(dataset.test_images[picks], dataset.test_labels[picks], size, train=False)
    sample = sample_record("test", picks, seed, dataset=dataset.source, classes=dataset.num_classes)
    return next(iter(loader))[0], sample
