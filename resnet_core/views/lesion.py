"""What the Lesions page shows: a trained run's lesion study (Veit et al. 2016,
https://arxiv.org/abs/1605.06431), its charts and the sentences computed from it, and the
shipped results in checkpoints/demo/lesion/.

A result is two tables and a record. `single`: one row per block of each net, the test
accuracy with that block deleted. `random`: one row per (net, k, draw), the accuracy with k
random blocks deleted. `record`: how it was made (command, hardware, torch, date, images).
On disk they are FILE.csv, FILE-random.csv and FILE.json.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import torch

from resnet_core.analysis.lesion import (
    DEFAULT_DRAWS,
    DEFAULT_IMAGES,
    Progress,
    lesion_study,
    stratified_indices,
)
from resnet_core.common.device import device_name, machine_summary
from resnet_core.common.files import read_json, write_bytes_atomic, write_json_atomic
from resnet_core.training.data import Cifar10, load_dataset
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import RunError, load_checkpoint, load_run, run_normalization
from resnet_core.views.charts import PLAIN_COLOUR, RESIDUAL_COLOUR
from resnet_core.views.inspect import run_test_set

__all__ = [
    "DEFAULT_IMAGES",
    "DEFAULT_DRAWS",
    "LesionResult",
    "lesion_test_set",
    "run_lesion",
    "combine",
    "machine_record",
    "result_paths",
    "write_results",
    "read_results",
    "shipped_results",
    "single_summary",
    "random_summary",
    "single_story",
    "random_story",
    "single_chart",
    "random_chart",
    "depth_pairs",
    "select",
]

SHIPPED_NAME = "lesion"  # checkpoints/demo/lesion/lesion.csv, lesion-random.csv, lesion.json
NEAR_CHANCE = 10.0  # points above chance that still read as "near chance"
GREY = "#555555"
INK = "#222222"


@dataclass(frozen=True, eq=False)
class LesionResult:
    """One or more nets' lesion studies.

    Attributes:
        single: net, residual, block, stage, position, deletable, replaced_by, correct,
            images, accuracy, intact (fractions) and drop (percentage points).
        random: net, residual, k, draw, blocks, correct, images, accuracy (fraction).
        record: command, hardware, torch, date, images, draws, seed, and one entry per
            net under "runs" (its run folder, seconds taken).
    """

    single: pd.DataFrame
    random: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)

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


def _sample_text(picked: int, available: int, classes: int) -> str:
    if picked >= available:
        return f"all {available:,} test images"
    return f"the first {picked // classes:,} test images of each class"


def run_lesion(
    run_dir: str | os.PathLike,
    data: Cifar10 | None = None,
    images: int = DEFAULT_IMAGES,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_progress: Progress | None = None,
    batch_size: int = 500,
) -> LesionResult:
    """The lesion study of a run's best checkpoint on a fixed stratified sample of its test
    set (the first images/classes of each class), normalised as the run was trained.

    Args:
        run_dir: a run folder with best.pt.
        data: its test data (`lesion_test_set`); None loads it from the default data folder.
        images: test images to use (all, if the test set has fewer).
        draws: random sets of blocks per k; 0 measures single deletions only.
        seed: seed of the random draws.
        device: where to run.
        on_progress: called after each evaluation as (done, total, sentence).
        batch_size: images per forward pass.

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
    picks = stratified_indices(data.test_labels, images, data.num_classes)
    started = time.perf_counter()
    single, random = lesion_study(
        model, data.test_images[picks], data.test_labels[picks], mean, std,
        draws=draws, seed=seed, batch_size=batch_size, device=device, on_progress=on_progress,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    for frame in (single, random):
        frame.insert(0, "residual", bool(model.spec.residual))
        frame.insert(0, "net", info.model)
    sample = {"images": len(picks), "draws": draws, "seed": seed, "batch_size": batch_size}
    record = _record(run_dir, info, data, sample, device, seconds)
    return LesionResult(single, random, record)


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
        "sample": _sample_text(sample["images"], len(data.test_labels), data.num_classes),
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
    record and every net's entry under "runs"."""
    merged = dict(results[0].record) if results else {}
    merged["runs"] = [run for result in results for run in result.record.get("runs", [])]
    merged.update(record)
    return LesionResult(
        pd.concat([r.single for r in results], ignore_index=True),
        pd.concat([r.random for r in results], ignore_index=True),
        merged,
    )


def machine_record(command: str) -> dict[str, Any]:
    """Command, hardware, torch, Python and date, for a results file."""
    return {
        "command": command,
        "hardware": {
            "summary": machine_summary(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


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
    """Write the two tables and the record (atomically); returns the three paths."""
    single_path, random_path, record_path = result_paths(path)
    single_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(single_path, result.single.to_csv(index=False).encode())
    write_bytes_atomic(random_path, result.random.to_csv(index=False).encode())
    write_json_atomic(record_path, result.record)
    return [single_path, random_path, record_path]


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
    return LesionResult(frames[0], frames[1], record if isinstance(record, dict) else {})


def shipped_path() -> Path:
    return shipped_root() / SHIPPED_NAME / f"{SHIPPED_NAME}.csv"


def shipped_results() -> LesionResult | None:
    """The lesion study that ships with the app (the degradation nets), or None if absent."""
    try:
        return read_results(shipped_path())
    except RunError:
        return None


# Numbers and sentences --------------------------------------------------------------------
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


def _chance(frame: pd.DataFrame) -> float:
    """Chance accuracy in percent (10 % for CIFAR-10's ten classes)."""
    return 10.0 if "classes" not in frame else 100.0 / float(frame["classes"].iloc[0])


def _ordered(nets: Sequence[str], residual: dict[str, bool]) -> list[str]:
    """Residual nets first: the sentence leads with the claim, then the contrast."""
    return sorted(nets, key=lambda net: not residual.get(net, False))


def _single_sentence(row: pd.Series, chance: float) -> str:
    net = row["net"]
    if row["deletable"] == 0:
        return f"No block of {net} can be deleted without changing a shape."
    kept = row["blocks"] - row["deletable"]
    tail = (
        f" ({kept} block{'s' if kept > 1 else ''} at a stage change cannot be deleted)"
        if kept
        else ""
    )
    if row["mean_accuracy"] <= chance + NEAR_CHANCE:
        return (
            f"For {net} one deletion leaves {row['mean_accuracy']:.0f} % on average, near chance "
            f"({chance:.0f} %), down from {row['intact']:.0f} %{tail}."
        )
    return (
        f"Deleting one block of {net} costs {row['mean_drop']:.1f} points on average (worst: "
        f"block {row['worst_block']}, {row['worst_drop']:.0f} points; intact "
        f"{row['intact']:.1f} %){tail}."
    )


def single_story(frame: pd.DataFrame) -> str:
    """One sentence per net about its single deletions, residual nets first."""
    summary = single_summary(frame)
    if summary.empty:
        return ""
    rows = summary.set_index("net", drop=False)
    order = _ordered(list(rows.index), dict(zip(rows["net"], rows["residual"])))
    return " ".join(_single_sentence(rows.loc[net], _chance(frame)) for net in order)


def _spoken_list(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _random_sentence(group: pd.DataFrame, chance: float) -> str:
    net, most = group["net"].iloc[0], int(group["k"].max())
    at = group.set_index("k")["mean"]
    picks = sorted({k for k in (1, max(1, most // 4), max(1, most // 2)) if k in at.index})
    if not picks:
        return ""
    counts = _spoken_list([str(k) for k in picks])
    accuracies = _spoken_list([f"{at[k]:.0f} %" for k in picks])
    draws = int(group.loc[group["k"] > 0, "draws"].max())
    near = group[(group["k"] > 0) & (group["mean"] <= chance + 5)]
    tail = f"; within 5 points of chance from {int(near['k'].min())} on" if len(near) else ""
    return (
        f"{net} with {counts} of its {most} deletable blocks deleted at random: {accuracies} "
        f"right (mean of {draws} draw{'s' if draws > 1 else ''}){tail}."
    )


def random_story(frame: pd.DataFrame) -> str:
    """One sentence per net about k random deletions, residual nets first."""
    summary = random_summary(frame)
    if summary.empty or summary["k"].max() < 1:
        return ""
    residual = dict(zip(summary["net"], summary["residual"]))
    groups = dict(tuple(summary.groupby("net", sort=False)))
    chance = _chance(frame)
    return " ".join(
        _random_sentence(groups[net], chance) for net in _ordered(list(groups), residual)
    )


# Charts -----------------------------------------------------------------------------------
def _colour(residual: bool) -> str:
    return RESIDUAL_COLOUR if residual else PLAIN_COLOUR


def _label_size(large: bool) -> int:
    return 18 if large else 13


def _rule(value: float, dash: list[int], label: str = "", large: bool = False) -> alt.Chart:
    """A horizontal line, labelled inside the plot at its right end, just above the line
    (where bars at most reach it: the intact accuracy). Without a label, the line alone."""
    data = pd.DataFrame({"y": [value], "label": [label]})
    base = alt.Chart(data).encode(y="y:Q")
    rule = base.mark_rule(color=INK, strokeDash=dash, strokeWidth=2)
    if not label:
        return rule
    text = base.mark_text(
        align="right", baseline="bottom", dx=-4, dy=-4, fontSize=_label_size(large),
        fontWeight="bold", color=INK,
    ).encode(x=alt.value("width"), text="label:N")  # fmt: skip
    return rule + text


def _net_bars(frame: pd.DataFrame, chance: float, large: bool) -> alt.LayerChart:
    """Bars of one net: accuracy with each block deleted; blocks that cannot go are a grey
    column that says so. The intact net is a labelled dashed line; chance, a dotted line
    named in the subtitle (bars of a plain net sit on it, so a label there would be hidden)."""
    net, residual = frame["net"].iloc[0], bool(frame["residual"].iloc[0])
    data = frame.assign(percent=100 * frame["accuracy"], label=frame["block"].astype(str))
    kind = "residual" if residual else "plain"
    intact = 100 * float(frame["intact"].iloc[0])
    title = alt.Title(
        f"{net} ({kind}): accuracy with one block deleted",
        subtitle=f"dashed: the intact net ({intact:.1f} %); dotted: chance ({chance:.0f} %)",
        subtitleFontSize=_label_size(large),
    )
    x = alt.X(
        "label:N",
        sort=list(data["label"]),
        title="deleted block (stage.block)",
        axis=alt.Axis(labelAngle=0, labelFontWeight="bold"),
    )
    base = alt.Chart(data, title=title).encode(x=x)
    y = alt.Y("percent:Q", title="test accuracy (%)", scale=alt.Scale(domain=[0, 100]))
    bars = base.mark_bar(color=_colour(residual)).encode(
        y=y,
        tooltip=[
            alt.Tooltip("label:N", title="deleted block"),
            alt.Tooltip("percent:Q", title="accuracy (%)", format=".1f"),
            alt.Tooltip("drop:Q", title="drop (points)", format=".1f"),
            alt.Tooltip("replaced_by:N", title="replaced by"),
        ],
    )
    kept = base.transform_filter(~alt.datum.deletable)
    column = kept.mark_bar(color="#ececec").encode(y=alt.datum(0), y2=alt.datum(100))
    words = kept.mark_text(
        angle=270, align="center", baseline="middle", color=GREY, fontSize=_label_size(large)
    ).encode(y=alt.datum(35), text=alt.value("cannot delete"))
    layers = alt.layer(
        column,
        bars,
        _rule(intact, [8, 4], f"intact {intact:.1f} %", large),
        _rule(chance, [2, 3]),
        words,
    )
    return layers.properties(width=alt.Step(40 if large else 32), height=300 if large else 220)


def single_chart(frame: pd.DataFrame, large: bool = False) -> alt.VConcatChart:
    """One bar chart per net (plain first, residual below, same scale): the test accuracy
    with each block deleted on its own, the intact accuracy and chance as lines."""
    chance = _chance(frame)
    nets = list(dict.fromkeys(frame["net"]))
    residual = dict(zip(frame["net"], frame["residual"].astype(bool)))
    order = sorted(nets, key=lambda net: residual[net])  # plain above residual
    charts = [_net_bars(frame[frame["net"] == net], chance, large) for net in order]
    return alt.vconcat(*charts, spacing=36 if large else 28)


def random_chart(frame: pd.DataFrame, large: bool = False) -> alt.LayerChart:
    """Mean accuracy against the number of blocks deleted at random, one line per net, with
    the range of the draws as a band and chance as a dotted line."""
    summary = random_summary(frame)
    nets = list(dict.fromkeys(summary["net"]))
    residual = dict(zip(summary["net"], summary["residual"].astype(bool)))
    scale = alt.Scale(domain=nets, range=[_colour(residual[net]) for net in nets])
    legend = alt.Legend(title="net", symbolOpacity=1, symbolType="stroke", symbolStrokeWidth=4)
    base = alt.Chart(summary, title="Accuracy with k blocks deleted at random").encode(
        x=alt.X(
            "k:Q",
            title="blocks deleted at random (k)",
            axis=alt.Axis(tickMinStep=1),
            scale=alt.Scale(domain=[0, int(summary["k"].max())], nice=False),
        ),
        color=alt.Color("net:N", scale=scale, legend=legend),
    )
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q"), y2="high:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title="test accuracy (%)", scale=alt.Scale(domain=[0, 100])),
        tooltip=[
            "net:N",
            "k:Q",
            alt.Tooltip("mean:Q", title="mean (%)", format=".1f"),
            alt.Tooltip("low:Q", title="lowest draw (%)", format=".1f"),
            alt.Tooltip("high:Q", title="highest draw (%)", format=".1f"),
            alt.Tooltip("draws:Q", title="draws"),
        ],
    )
    chance = _chance(frame)
    label = (
        alt.Chart(pd.DataFrame({"y": [chance], "label": [f"chance {chance:.0f} %"]}))
        .mark_text(
            align="left", baseline="top", dx=4, dy=4, fontSize=_label_size(large),
            fontWeight="bold", color=INK,
        )
        .encode(x=alt.value(0), y="y:Q", text="label:N")
    )  # fmt: skip
    return (band + line + _rule(chance, [2, 3]) + label).properties(height=360 if large else 280)


# Choosing what to show ------------------------------------------------------------------------
def depth_pairs(nets: Sequence[str]) -> dict[str, list[str]]:
    """Nets grouped by the depth in their names, in order of appearance: {"20 layers":
    ["plain20", "resnet20"], "56 layers": [...]}, so a plain net is shown beside its twin."""
    groups: dict[str, list[str]] = {}
    for net in nets:
        digits = "".join(char for char in net if char.isdigit())
        groups.setdefault(f"{digits} layers" if digits else net, []).append(net)
    return groups


def select(result: LesionResult, nets: Sequence[str]) -> LesionResult:
    """The result restricted to some nets (the record is kept whole)."""
    return LesionResult(
        result.single[result.single["net"].isin(nets)].reset_index(drop=True),
        result.random[result.random["net"].isin(nets)].reset_index(drop=True),
        result.record,
    )
