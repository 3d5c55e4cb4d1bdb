"""A trained run's lesion study (Veit et al. 2016, https://arxiv.org/abs/1605.06431): deleting
its blocks one at a time and k at random, the tables that say what was left of its test
accuracy, and the result files, shipped in checkpoints/demo/lesion/.

A result is two tables, a record and a sample. `single`: one row per block of each net, the
test accuracy with that block deleted. `random`: one row per (net, k, draw), the accuracy
with k random blocks deleted. `record`: how it was made (command, hardware, torch, date,
images). `sample`: which test images (a seeded pick, the same number of each class). On disk
they are FILE.csv, FILE-random.csv, FILE.json and, in the same folder, sample.json. The
deletions are `resnet_core.analysis.lesion`; their charts and sentences,
`resnet_core.views.lesion`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from resnet_core.analysis.lesion import (
    DEFAULT_DRAWS,
    DEFAULT_IMAGES,
    Progress,
    lesion_study,
    lesion_units,
)
from resnet_core.analysis.sampling import (
    SAMPLE_FILE,
    sample_record,
    sample_text,
    stratified_indices,
)
from resnet_core.common.device import device_name
from resnet_core.common.files import json_bytes, read_json, write_new
from resnet_core.studies.datasets import run_test_set
from resnet_core.training.data import Cifar10, load_dataset
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import RunError, load_checkpoint, load_run, run_normalization

__all__ = [
    "LesionResult",
    "lesion_test_set",
    "lesion_sample",
    "run_lesion",
    "combine",
    "result_paths",
    "write_results",
    "read_results",
    "shipped_path",
    "shipped_results",
    "select",
    "single_summary",
    "random_summary",
]

SHIPPED_NAME = "lesion"  # checkpoints/demo/lesion/lesion.csv, lesion-random.csv, lesion.json


@dataclass(frozen=True, eq=False)
class LesionResult:
    """One or more nets' lesion studies.

    Attributes:
        single: net, residual, block, stage, position, deletable, replaced_by, correct,
            images, accuracy, intact (fractions) and drop (percentage points).
        random: net, residual, k, draw, blocks, correct, images, accuracy (fraction).
        record: command, hardware, torch, date, images, draws, seed, and one entry per
            net under "runs" (its run folder, seconds taken).
        sample: the test images measured (what `SAMPLE_FILE` holds: split, indices, how),
            or None where the nets were measured on different images.
    """

    single: pd.DataFrame
    random: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] | None = None

    @property
    def nets(self) -> list[str]:
        return list(dict.fromkeys(self.single["net"]))


# Computing -------------------------------------------------------------------------------
def lesion_test_set(
    run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None
) -> Cifar10:
    """The data a run must be judged on: CIFAR-10, or the synthetic set it trained on.

    Raises:
        RunError: config.json names no dataset. DatasetNotFound: CIFAR-10 is not there.
    """
    test_set = run_test_set(run_dir)
    if test_set.synthetic:
        return load_dataset("synthetic", subset=test_set.subset, seed=test_set.seed)
    return load_dataset("cifar10", root=data_dir)


def _run_name(run_dir: Path) -> str:
    """The run folder relative to the shipped results (e.g. degradation/resnet20), else its
    own name: never a machine path."""
    try:
        return run_dir.resolve().relative_to(shipped_root().resolve()).as_posix()
    except ValueError:
        return run_dir.name


def _sample_text(picked: int, available: int, classes: int, seed: int) -> str:
    if picked >= available:
        return f"all {available:,} test images"
    if picked % classes:
        return f"{picked:,} test images, as even across the classes as it allows, seed {seed}"
    return f"{picked // classes:,} test images of each class, picked with seed {seed}"


def lesion_sample(data: Cifar10, images: int, seed: int) -> dict[str, Any]:
    """The test images a lesion study measures: `images` of them, the same number of each
    class (within one), picked with `seed`; all of them if there are no more. The record
    that `SAMPLE_FILE` holds."""
    labels = data.test_labels
    extra = {"dataset": data.source, "classes": data.num_classes}
    if images >= len(labels):
        return sample_record(
            "test", torch.arange(len(labels)), seed, how="all test images", **extra
        )
    return sample_record("test", stratified_indices(labels, images, seed), seed, **extra)


def run_lesion(
    run_dir: str | os.PathLike,
    data: Cifar10 | None = None,
    images: int = DEFAULT_IMAGES,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_progress: Progress | None = None,
    batch_size: int = 500,
    label: str | None = None,
) -> LesionResult:
    """The lesion study of a run's best checkpoint on a stratified sample of its test set
    (`lesion_sample`: the same number of each class, picked with `seed`), normalised as
    the run was trained.

    Args:
        run_dir: a run folder with best.pt.
        data: its test data (`lesion_test_set`); None loads it from the default data folder.
        images: test images to use (all, if the test set has fewer).
        draws: random sets of blocks per k; 0 measures single deletions only.
        seed: seed of the image sample and of the random draws.
        device: where to run.
        on_progress: called after each evaluation as (done, total, sentence).
        batch_size: images per forward pass.
        label: the net's name in the tables (default: its model label, e.g. resnet20).

    Raises:
        RunError: no best.pt, or one that cannot be read. LesionError: not a ResNet.
        DatasetNotFound: data is None and CIFAR-10 is not in the default folder.
    """
    run_dir = Path(run_dir)
    model, info = load_run(run_dir, which="best", device=device)  # fails first: no best.pt
    model = model.to(memory_format=torch.channels_last)  # faster on a CPU too (RESULTS.md)
    data = lesion_test_set(run_dir) if data is None else data
    if model.spec.num_classes != data.num_classes:
        raise RunError(
            f"{run_dir}: the net answers {model.spec.num_classes} classes, the data has {data.num_classes}"
        )
    mean, std = run_normalization(run_dir)
    sample = lesion_sample(data, images, seed)
    picks = torch.tensor(sample["indices"], dtype=torch.long)
    started = time.perf_counter()
    single, random = lesion_study(
        model, data.test_images[picks], data.test_labels[picks], mean, std,
        draws=draws, seed=seed, batch_size=batch_size, device=device, on_progress=on_progress,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    for frame in (single, random):
        frame.insert(0, "residual", bool(model.spec.residual))
        frame.insert(0, "net", label or info.model)
    settings = {"images": len(picks), "draws": draws, "seed": seed, "batch_size": batch_size}
    record = _record(run_dir, info, data, settings, device, seconds)
    record["runs"][0]["net"] = label or info.model
    return LesionResult(single, random, record, sample)


def lesion_labels(run_dirs: Sequence[str | os.PathLike]) -> dict[str, str]:
    """Check every run before any is measured (a readable best.pt and spec, a ResNet) and name
    each in the tables: its net (resnet20), or where two runs are the same net, the net and
    its run folder (resnet20 (cif20)), so that two runs are never merged into one net.

    Raises:
        RunError: a run named twice, or one without a readable best.pt.
        LesionError: a run that is not a ResNet.
    """
    nets: dict[str, str] = {}
    for run_dir in run_dirs:
        if str(run_dir) in nets:
            raise RunError(f"{run_dir}: named twice; give each run once")
        model, info = load_run(run_dir, which="best")
        lesion_units(model)  # a plain conv stack has no blocks: refused here, not after others
        nets[str(run_dir)] = info.model
    counts = Counter(nets.values())
    labels = {
        run: f"{net} ({_run_name(Path(run))})" if counts[net] > 1 else net
        for run, net in nets.items()
    }
    if len(set(labels.values())) < len(labels):
        raise RunError("two runs have the same net and folder name; rename one folder")
    return labels


def _record(
    run_dir: Path, info: Any, data: Cifar10, sample: dict, device: Any, seconds: float
) -> dict[str, Any]:
    """What one net's lesion study was measured on, by whom and how long it took."""
    run = {
        "net": info.model,
        "run": _run_name(run_dir),
        "epoch": load_checkpoint(run_dir / "best.pt")["epoch"],
        "recorded_test_acc": info.best_test_acc,
        "seconds": round(seconds, 1),
    }
    return {
        "images": sample["images"],
        "sample": _sample_text(
            sample["images"], len(data.test_labels), data.num_classes, sample["seed"]
        ),
        "dataset": data.source,
        "synthetic": data.synthetic,
        "draws": sample["draws"],
        "seed": sample["seed"],
        "batch_size": sample["batch_size"],
        "device": device_name(torch.device(device)),
        "runs": [run],
    }


def combine(results: Sequence[LesionResult], **record: Any) -> LesionResult:
    """Several nets' results as one (their tables stacked), with `record` added to the first
    record and every net's entry under "runs"; their sample if they share one, else None."""
    merged = dict(results[0].record) if results else {}
    merged["runs"] = [run for result in results for run in result.record.get("runs", [])]
    merged.update(record)
    samples = [r.sample for r in results]
    shared = samples[0] if samples and all(s == samples[0] for s in samples) else None
    return LesionResult(
        pd.concat([r.single for r in results], ignore_index=True),
        pd.concat([r.random for r in results], ignore_index=True),
        merged,
        shared,
    )


# Files ----------------------------------------------------------------------------------
def result_paths(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(single CSV, random CSV, record JSON) for FILE.csv: FILE.csv, FILE-random.csv, FILE.json."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix == ".csv" else path
    return (
        stem.with_name(stem.name + ".csv"),
        stem.with_name(stem.name + "-random.csv"),
        stem.with_name(stem.name + ".json"),
    )


def write_results(result: LesionResult, path: str | os.PathLike) -> list[Path]:
    """Write the two tables, the record and, beside them in the same folder, the sample
    (`SAMPLE_FILE`), each atomically; returns the four paths.

    Raises:
        ValueError: the result has no one sample (its nets were measured on different images).
    """
    if result.sample is None:
        raise ValueError(
            "lesion results: the nets were measured on different test images; write them apart"
        )
    single_path, random_path, record_path = result_paths(path)
    sample_path = single_path.parent / SAMPLE_FILE
    single_path.parent.mkdir(parents=True, exist_ok=True)
    # written only where nothing is: an existing file is FileExistsError, and left as it was
    write_new(single_path, lambda out: out.write(result.single.to_csv(index=False).encode()))
    write_new(random_path, lambda out: out.write(result.random.to_csv(index=False).encode()))
    write_new(record_path, lambda out: out.write(json_bytes(result.record)))
    write_new(sample_path, lambda out: out.write(sample_text(result.sample).encode()))
    return [single_path, random_path, record_path, sample_path]


SINGLE_COLUMNS = ("net", "residual", "block", "deletable", "accuracy", "intact", "drop")
RANDOM_COLUMNS = ("net", "residual", "k", "draw", "accuracy")


def read_results(path: str | os.PathLike) -> LesionResult:
    """Read what `write_results` wrote.

    Raises:
        RunError: a file is missing, unreadable or lacks a column (one line naming it).
    """
    single_path, random_path, record_path = result_paths(path)
    frames = []
    for file, columns in ((single_path, SINGLE_COLUMNS), (random_path, RANDOM_COLUMNS)):
        try:
            frame = pd.read_csv(
                file, dtype={"block": str, "blocks": str}, keep_default_na=False, na_values=[""]
            )
        except (OSError, ValueError) as error:
            raise RunError(
                f"{file}: not a readable lesion table ({type(error).__name__})"
            ) from None
        missing = [column for column in columns if column not in frame]
        if missing:
            raise RunError(f"{file}: not a lesion table (no {', '.join(missing)} column)")
        frames.append(frame)
    frames[0]["correct"] = frames[0]["correct"].astype("Int64")
    frames[1]["blocks"] = frames[1]["blocks"].fillna("")
    record = read_json(record_path)
    sample = read_json(single_path.parent / SAMPLE_FILE)
    return LesionResult(
        frames[0],
        frames[1],
        record if isinstance(record, dict) else {},
        sample if isinstance(sample, dict) else None,
    )


def shipped_path() -> Path:
    """Where the shipped study's single-deletion table is; the other two files sit beside it."""
    return shipped_root() / SHIPPED_NAME / f"{SHIPPED_NAME}.csv"


def shipped_results() -> LesionResult | None:
    """The lesion study that ships with the app (the degradation nets), or None if absent."""
    try:
        return read_results(shipped_path())
    except RunError:
        return None


# Choosing and summing up ----------------------------------------------------------------
def select(result: LesionResult, nets: Sequence[str]) -> LesionResult:
    """The result restricted to some nets (the record is kept whole)."""
    return LesionResult(
        result.single[result.single["net"].isin(nets)].reset_index(drop=True),
        result.random[result.random["net"].isin(nets)].reset_index(drop=True),
        result.record,
        result.sample,
    )


def single_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per net: intact accuracy, mean/median/worst drop after one deletion (points), the
    worst block, mean/median accuracy left (percent), and how many blocks can be deleted."""
    rows = []
    for net, group in frame.groupby("net", sort=False):
        deletable = group[group["deletable"].astype(bool)]
        worst = deletable.loc[deletable["drop"].idxmax()] if len(deletable) else None
        rows.append(
            {
                "net": net,
                "residual": bool(group["residual"].iloc[0]),
                "intact": 100 * float(group["intact"].iloc[0]),
                "mean_drop": float(deletable["drop"].mean()),
                "median_drop": float(deletable["drop"].median()),
                "worst_block": None if worst is None else str(worst["block"]),
                "worst_drop": None if worst is None else float(worst["drop"]),
                "mean_accuracy": 100 * float(deletable["accuracy"].mean()),
                "median_accuracy": 100 * float(deletable["accuracy"].median()),
                "deletable": len(deletable),
                "blocks": len(group),
            }
        )
    return pd.DataFrame(rows)


def random_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per net and k: mean, lowest and highest accuracy over the draws (percent), draws."""
    grouped = frame.assign(percent=100 * frame["accuracy"]).groupby(["net", "k"], sort=False)
    summary = grouped.agg(
        residual=("residual", "first"),
        mean=("percent", "mean"),
        low=("percent", "min"),
        high=("percent", "max"),
        draws=("percent", "size"),
    )
    return summary.reset_index()
