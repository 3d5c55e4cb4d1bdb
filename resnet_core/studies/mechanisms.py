"""The three mechanisms measured for the Mechanisms page and the lecture, on real images:
every variant at depths 20, 56 and 110 at init over several seeds, and a trained net.

- shatter: the neighbour correlation of the input gradient along a line from one test image to
  another of a different class, per variant, depth and seed (`shatter.csv`), and the gradient
  along the line itself for the plain and residual nets at seed 0 (`along.csv`);
- variance: per block, the residual branch's variance against the skip's at init, per variant
  at depth 110 and seed (`variance.csv`);
- paths: the gradient through paths of each length k, at init and for trained runs
  (`paths.csv`).

`mechanisms.json` beside them records the command, settings, seconds per part, machine and
versions; `sample.json` the test images (seeded, drawn across the classes). The measuring is
`resnet_core.analysis.mechanisms`; the charts and sentences `resnet_core.views.mechanisms`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from resnet_core.analysis.mechanisms import branch_variance, path_gradients, shattered_gradients
from resnet_core.analysis.sampling import (
    SAMPLE_FILE,
    sample_record,
    sample_text,
    stratified_indices,
)
from resnet_core.common.env import provenance
from resnet_core.common.files import json_bytes, read_json, write_new
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import resolve_spec
from resnet_core.training.data import Cifar10, normalization
from resnet_core.training.events import EpochEnd, Step
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import load_run, read_events, run_normalization

__all__ = [
    "VARIANTS",
    "DEPTHS",
    "FILES",
    "Shipped",
    "preset",
    "test_images",
    "measure_shatter",
    "measure_along",
    "measure_variance",
    "measure_paths",
    "run_study",
    "study_record",
    "trained_net",
    "write_study",
    "read_study",
    "mechanisms_root",
    "variant_of",
    "variant_training",
]

# Every variant by its readable name, as the preset that builds it at a depth.
VARIANTS = {
    "plain": "plain{}",
    "ResNet": "resnet{}",
    "pre-activation": "preact-resnet{}",
    "zero-init": "resnet{}-zeroinit",
    "SkipInit": "resnet{}-skipinit",
    "Fixup": "resnet{}-fixup",
    "ResNet without norm": "resnet{}-nonorm",
    "plain without norm": "plain{}-nonorm",
}
PLAIN = ("plain", "plain without norm")  # no additions: nothing for variance or paths to read
DEPTHS = (20, 56, 110)
FILES = ("shatter.csv", "along.csv", "variance.csv", "paths.csv")
Progress = Callable[[str], None]


def preset(variant: str, depth: int) -> str:
    return VARIANTS[variant].format(depth)


def _net(variant: str, depth: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(resolve_spec(preset(variant, depth)))


def test_images(data: Cifar10, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """`count` test images drawn across the classes with `seed`, normalised as training does
    by default; their labels; and their `sample.json` record."""
    indices = stratified_indices(data.test_labels, count, seed)
    mean, std = normalization(None)
    images = data.test_images[indices].float() / 255
    images = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    extra = {"dataset": data.source}
    return images, data.test_labels[indices], sample_record("test", indices, seed, **extra)


def _ends(images: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """The line for `seed`: image `seed` of the sample to the next one of another class."""
    start = seed % len(images)
    others = [i for i in range(len(images)) if labels[i] != labels[start]]
    end = min(others, key=lambda i: (i - start) % len(images))
    return images[start], images[end]


def measure_shatter(images, labels, seeds: int, depths=DEPTHS, points: int = 64) -> pd.DataFrame:
    """Columns variant, depth, net, residual, seed, correlation: one row per net and seed."""
    rows = []
    for depth in depths:
        for variant in VARIANTS:
            for seed in range(seeds):
                start, end = _ends(images, labels, seed)
                found = shattered_gradients(_net(variant, depth, seed), start, end, points, seed)
                rows.append({
                    "variant": variant, "depth": depth, "net": preset(variant, depth),
                    "residual": variant not in PLAIN, "seed": seed,
                    "correlation": found["correlation"],
                })  # fmt: skip
    return pd.DataFrame(rows)


def measure_along(images, labels, depths=DEPTHS, points: int = 64) -> pd.DataFrame:
    """The gradient along seed 0's line, plain and ResNet at each depth. Columns variant,
    depth, net, t, gradient (at the input pixel where it is largest), norm."""
    start, end = _ends(images, labels, 0)
    frames = []
    for depth in depths:
        for variant in ("plain", "ResNet"):
            along = shattered_gradients(_net(variant, depth, 0), start, end, points, 0)["along"]
            frames.append(along.assign(variant=variant, depth=depth, net=preset(variant, depth)))
    return pd.concat(frames, ignore_index=True)[
        ["variant", "depth", "net", "t", "gradient", "norm"]
    ]


def measure_variance(images, seeds: int, depth: int = 110) -> pd.DataFrame:
    """Columns variant, depth, net, seed, block, branch, skip, ratio (every residual variant)."""
    frames = []
    for variant in (v for v in VARIANTS if v not in PLAIN):
        for seed in range(seeds):
            frame = branch_variance(_net(variant, depth, seed), images)
            frames.append(frame.assign(variant=variant, depth=depth, net=preset(variant, depth), seed=seed))  # fmt: skip
    return pd.concat(frames, ignore_index=True)[
        ["variant", "depth", "net", "seed", "block", "branch", "skip", "ratio"]
    ]


def measure_paths(
    nets: dict[str, torch.nn.Module], images, labels, samples: int = 4
) -> pd.DataFrame:
    """Per labelled net, every path length k: columns net, blocks, k, paths, gradient, total."""
    frames = []
    for label, model in nets.items():
        blocks = sum(1 for m in model.modules() if getattr(m, "residual", False))
        lengths = list(range(blocks + 1))
        frame = path_gradients(model, images, labels, lengths, samples=samples, seed=0)
        frames.append(frame.assign(net=label, blocks=blocks))
    return pd.concat(frames, ignore_index=True)[
        ["net", "blocks", "k", "paths", "gradient", "total"]
    ]


def trained_net(run: str | os.PathLike) -> torch.nn.Module:
    """A run's best weights, for `run_study`'s `trained` (RunError if there are none, or
    ValueError for another normalisation than the study's images have)."""
    model, _ = load_run(run, which="best")
    if run_normalization(run) != normalization(None):
        raise ValueError(f"{Path(run).name}: trained with another normalisation than CIFAR-10's")
    return model.float().eval()


def run_study(
    data: Cifar10,
    trained: dict[str, torch.nn.Module] | None = None,
    seeds: int = 3,
    images: int = 64,
    depths: Sequence[int] = DEPTHS,
    on_progress: Progress | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, float], dict]:
    """Every part of the study: (frames by file name, seconds per part, sample record).

    `trained` nets by name (`trained_net`) have their paths measured beside the same net at
    init (`<name> at init`, seed 0) on the same images; without any, ResNet-56 at init."""
    say = on_progress or (lambda _: None)
    pixels, labels, sample = test_images(data, images, seed=0)
    frames, seconds = {}, {}
    tasks = {
        "shatter.csv": lambda: measure_shatter(pixels, labels, seeds, depths),
        "along.csv": lambda: measure_along(pixels, labels, depths),
        "variance.csv": lambda: measure_variance(pixels, seeds, max(depths)),
        "paths.csv": lambda: measure_paths(_path_nets(trained or {}), pixels, labels),
    }
    for name, task in tasks.items():
        say(f"measuring {name[:-4]} ...")
        started = time.perf_counter()
        frames[name] = task()
        seconds[name[:-4]] = round(time.perf_counter() - started, 1)
    return frames, seconds, sample


def _path_nets(trained: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
    nets: dict[str, torch.nn.Module] = {}
    for name, model in trained.items():
        torch.manual_seed(0)
        nets[f"{name} at init"] = build_model(model.spec)
        nets[f"{name} trained"] = model
    if not nets:
        nets["resnet56 at init"] = _net("ResNet", 56, 0)
    return nets


def write_study(
    folder: str | os.PathLike, frames: dict[str, pd.DataFrame], record: dict, sample: dict
) -> list[Path]:
    """Write each frame as CSV, `mechanisms.json` and `sample.json` into `folder`, only where
    nothing is (an existing file is FileExistsError, and nothing is written)."""
    folder = Path(folder)
    targets = [folder / name for name in [*frames, "mechanisms.json", SAMPLE_FILE]]
    taken = [path.name for path in targets if path.exists()]
    if taken:
        raise FileExistsError(f"{folder}: already holds {', '.join(taken)}; name another folder")
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        text = frame.to_csv(index=False).encode("utf-8")
        write_new(folder / name, lambda out, text=text: out.write(text))
    write_new(folder / "mechanisms.json", lambda out: out.write(json_bytes(record)))
    write_new(folder / SAMPLE_FILE, lambda out: out.write(sample_text(sample).encode("utf-8")))
    return targets


def study_record(command: str, settings: dict[str, Any], seconds: dict[str, float]) -> dict:
    made = provenance(command)
    return {"command": made.pop("command"), "settings": settings, "seconds": seconds, **made}


@dataclass(frozen=True)
class Shipped:
    """A study's files, read back."""

    shatter: pd.DataFrame
    along: pd.DataFrame
    variance: pd.DataFrame
    paths: pd.DataFrame
    record: dict


# Training evidence -------------------------------------------------------------------------
TRAINED = "variants56"  # the experiment that trains every variant at depth 56


def variant_of(preset_name: str) -> str:
    """'resnet56-zeroinit' -> 'zero-init': the readable name of a variant's preset."""
    for variant, template in VARIANTS.items():
        for depth in DEPTHS:
            if template.format(depth) == preset_name:
                return variant
    return preset_name


def variant_training(folder: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict] | None:  # fmt: skip
    """The variants trained on the same batches (the `variants56` experiment's folder,
    default the shipped one): (steps: variant, step, loss; epochs: variant, epoch,
    train_loss, test_acc; the experiment's record), or None when it is not there."""
    folder = Path(folder) if folder else shipped_root() / TRAINED
    record = read_json(folder / "experiment.json")
    if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
        return None
    steps, epochs = [], []
    for member in record["runs"]:
        variant = variant_of(member["label"])
        for event in read_events(folder / member["run"]):
            if isinstance(event, Step):
                steps.append({"variant": variant, "step": event.step, "loss": event.loss})
            elif isinstance(event, EpochEnd):
                epochs.append({
                    "variant": variant, "epoch": event.epoch, "train_loss": event.train_loss,
                    "test_acc": event.test_acc,
                })  # fmt: skip
    return pd.DataFrame(steps), pd.DataFrame(epochs), record


def mechanisms_root() -> Path:
    """Where the shipped study lives (checkpoints/demo/mechanisms)."""
    return shipped_root() / "mechanisms"


def read_study(folder: str | os.PathLike | None = None) -> Shipped | None:
    """The study in `folder` (default: the shipped one), or None if a file is missing."""
    folder = Path(folder) if folder else mechanisms_root()
    record = read_json(folder / "mechanisms.json")
    if not isinstance(record, dict) or not all((folder / name).is_file() for name in FILES):
        return None
    shatter, along, variance, paths = (pd.read_csv(folder / name) for name in FILES)
    return Shipped(shatter, along, variance, paths, record)
