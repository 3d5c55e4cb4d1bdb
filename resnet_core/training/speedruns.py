"""GPU speedrun recipes: one per preset, stored as data, each ingredient switchable.

A `Speedrun` is a preset, the test accuracy it aims at, the TrainConfig fields of the full
recipe and its `Ingredient`s. Each ingredient names the config changes that take it out,
so an ablation trains `recipe.train_config(without=("EMA",))` and so on
(`benchmarks/speedrun.py --ablation`).

Ingredients (each measured on its own in the ablation table of benchmarks/RESULTS.md once
a GPU run has produced it):
- large batch: 1024 images a step with the learning rate scaled linearly (Goyal et al.
  2017, https://arxiv.org/abs/1706.02677), fewer and fuller launches on a GPU;
- label smoothing (Szegedy et al. 2016, https://arxiv.org/abs/1512.00567);
- EMA: evaluate an exponential moving average of the weights (Polyak & Juditsky 1992);
- flip TTA: average the logits of each test image and its mirror image (as cifar10-airbench);
- CUDA graphs: torch.compile's "reduce-overhead" mode replays each step as one launch.

`measured` holds what a GPU benchmark run measured for the recipe as it stands (median of
its seeds); until then it is None and nothing shown to a user promises the target.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from resnet_core.common.errors import ConfigError
from resnet_core.training.config import TrainConfig

__all__ = ["Ingredient", "Measured", "Speedrun", "SPEEDRUNS", "get_speedrun"]


@dataclass(frozen=True)
class Ingredient:
    """One switchable part of a recipe: its name, why it is there, and the TrainConfig
    changes that take it out."""

    name: str
    why: str
    off: dict[str, Any]


@dataclass(frozen=True)
class Measured:
    """What a benchmark run measured for a recipe: median over `seeds` runs."""

    accuracy: float  # test accuracy, a fraction
    train_seconds: float  # training time to the end of the run, evaluation excluded
    seeds: int
    hardware: str  # e.g. "NVIDIA H200"
    source: str  # results file, relative to the repository root


@dataclass(frozen=True)
class Speedrun:
    """A preset's GPU speedrun recipe."""

    name: str
    title: str
    preset: str
    target: float  # test accuracy aimed at, a fraction
    config: dict[str, Any]
    ingredients: tuple[Ingredient, ...]
    measured: Measured | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def ingredient(self, name: str) -> Ingredient:
        for item in self.ingredients:
            if item.name == name:
                return item
        known = ", ".join(item.name for item in self.ingredients)
        raise ConfigError(f"speedrun {self.name}: no ingredient {name!r}; choose from {known}")

    def fields(self, without: Iterable[str] = (), **changes: Any) -> dict[str, Any]:
        """The recipe's TrainConfig fields with some ingredients taken out, then `changes`."""
        fields = {"model": self.preset, **self.config}
        for name in without:
            fields.update(self.ingredient(name).off)
        return {**fields, **changes}

    def train_config(self, without: Iterable[str] = (), **changes: Any) -> TrainConfig:
        """The recipe as a validated TrainConfig (see `fields`)."""
        return TrainConfig.from_dict(self.fields(without, **changes))

    @property
    def target_text(self) -> str:
        """The target as a percentage, e.g. "94%" or "91.25%"."""
        return f"{self.target:.2%}".replace(".00%", "%")

    def label(self) -> str:
        """The Train page's name for the recipe: it states the target only beside what was
        measured, and says so when nothing was."""
        if self.measured is None:
            return f"GPU speedrun: {self.title} (recipe for {self.target_text}, not yet measured)"
        m = self.measured
        return (
            f"GPU speedrun: {self.title} ({m.accuracy:.1%} in {m.train_seconds:.0f} s "
            f"on {m.hardware}, median of {m.seeds})"
        )


# Shared by both recipes: bf16, NHWC, one-cycle SGD with Nesterov momentum, crop + flip.
_GPU: dict[str, Any] = {
    "device": "cuda",
    "precision": "bf16",
    "channels_last": True,
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "schedule": "onecycle",
    "augment": True,
    "compile": True,
    "compile_mode": "reduce-overhead",
    "eval_every": 1_000,  # the last epoch only: evaluation is not training time
    "log_every": 50,  # no device sync per step
}


def _ingredients(batch_size: int, lr: float) -> tuple[Ingredient, ...]:
    return (
        Ingredient(
            "large batch",
            "1024 images a step, learning rate scaled linearly: fewer, fuller launches",
            {"batch_size": batch_size // 2, "lr": lr / 2},
        ),
        Ingredient(
            "label smoothing", "0.1 of each label spread over the others", {"label_smoothing": 0.0}
        ),
        Ingredient("EMA", "evaluate a moving average of the weights", {"ema": 0.0}),
        Ingredient("flip TTA", "average the logits of each image and its mirror", {"tta": "none"}),
        Ingredient(
            "CUDA graphs", "replay each step as one launch (torch.compile)", {"compile": False}
        ),
    )


SPEEDRUNS: dict[str, Speedrun] = {
    "resnet18": Speedrun(
        name="resnet18",
        title="ResNet-18 (CIFAR stem)",
        preset="resnet18",
        target=0.94,
        config={
            **_GPU,
            "epochs": 24,
            "batch_size": 1024,
            "lr": 0.8,
            "warmup": 0.2,
            "weight_decay": 5e-4,
            "label_smoothing": 0.1,
            "ema": 0.999,
            "tta": "flip",
        },
        ingredients=_ingredients(1024, 0.8),
    ),
    "resnet20": Speedrun(
        name="resnet20",
        title="ResNet-20",
        preset="resnet20",
        target=0.9125,  # He et al. 2016, Table 6
        config={
            **_GPU,
            "epochs": 60,
            "batch_size": 1024,
            "lr": 0.8,
            "warmup": 0.15,
            "weight_decay": 5e-4,
            "label_smoothing": 0.1,
            "ema": 0.999,
            "tta": "flip",
        },
        ingredients=_ingredients(1024, 0.8),
    ),
}


def get_speedrun(name: str) -> Speedrun:
    """The speedrun recipe of preset `name`; ConfigError names the ones there are."""
    try:
        return SPEEDRUNS[name]
    except (KeyError, TypeError):
        known = ", ".join(SPEEDRUNS)
        raise ConfigError(f"speedrun: no recipe for {name!r}; choose from {known}") from None
