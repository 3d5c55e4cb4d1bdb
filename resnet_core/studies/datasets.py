"""Which data a trained run is judged on: the test set its config.json names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from resnet_core.common.files import read_json
from resnet_core.training.runs import RunError

__all__ = ["TestSet", "run_test_set"]


@dataclass(frozen=True)
class TestSet:
    """The dataset a run trained on, as recorded in its config.json.

    Attributes:
        dataset: "cifar10" or "synthetic".
        subset: training images used (the synthetic set's size depends on it), or None.
        seed: the run's seed (the synthetic set is generated from it).
    """

    dataset: str
    subset: int | None
    seed: int

    @property
    def synthetic(self) -> bool:
        return self.dataset == "synthetic"


def run_test_set(run_path: str | os.PathLike) -> TestSet:
    """The test set a run must be judged on; RunError if its config.json does not say."""
    path = Path(run_path) / "config.json"
    config = read_json(path)
    if not isinstance(config, dict) or config.get("dataset") not in ("cifar10", "synthetic"):
        raise RunError(f"{path}: missing or names no known dataset; cannot tell what it trained on")
    subset, seed = config.get("subset"), config.get("seed", 0)
    return TestSet(
        str(config["dataset"]),
        subset if isinstance(subset, int) and subset > 0 else None,
        seed if isinstance(seed, int) else 0,
    )
