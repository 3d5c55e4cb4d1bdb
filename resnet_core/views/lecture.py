"""Lecture material: the slides' order and the tables and curves behind them.

Everything here reads the experiment results shipped in `checkpoints/demo` (see
`resnet_core.training.experiments`); nothing is trained or recomputed, so a slide appears at once.
Reference numbers: He et al. 2016, "Deep Residual Learning for Image Recognition",
Table 6 (CIFAR-10 test error), https://arxiv.org/abs/1512.03385.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from resnet_core.analysis.sampling import SAMPLE_FILE
from resnet_core.common.files import read_json
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec
from resnet_core.training.experiment_results import load_experiment
from resnet_core.training.experiments import setting_of, shipped_root

__all__ = [
    "SLIDES",
    "Slide",
    "HE_TABLE6",
    "HE_RECIPE",
    "slide_index",
    "degradation_curves",
    "degradation_summary",
    "results_table",
    "comparison_table",
    "weight_decay_gap",
    "trained_responses",
    "responses_sample",
    "recipe_text",
    "residual_block_dot",
    "results_long",
    "results_sentence",
    "comparison_sentence",
    "weight_decay_sentence",
    "HE2016_SLIDE",
    "HE_TABLE6_SOURCE",
    "lecture_slides",
    "he2016_name",
    "he2016_curves",
    "he2016_table",
    "he2016_sentence",
    "seed_spread",
    "spread_sentence",
]


@dataclass(frozen=True)
class Slide:
    key: str
    title: str


def _numbered(titles: tuple[tuple[str, str], ...], first: int = 1) -> tuple[Slide, ...]:
    """Slides titled "N. title" in the order given, counting from `first`."""
    return tuple(Slide(key, f"{first + i}. {title}") for i, (key, title) in enumerate(titles))


SLIDES: tuple[Slide, ...] = _numbered(
    (
        ("problem", "The problem: deeper plain nets train worse"),
        ("block", "The residual block"),
        ("shapes", "Shapes through ResNet-18"),
        ("gradients", "Gradients at initialisation"),
        ("responses", "Trained residual layers respond less (He et al. Fig. 7)"),
        ("lesion", "Delete one block: lesions (Veit et al.)"),
        ("landscape", "The loss around the trained weights (Li et al.)"),
        ("shatter", "Deep plain nets shatter the gradient (Balduzzi et al.)"),
        ("paths", "The gradient comes from short paths (Veit et al.)"),
        ("identity", "BatchNorm pulls each block toward the identity (De & Smith)"),
        ("results", "Our numbers beside He et al."),
        ("cnn_vs_resnet", "A small CNN against ResNet-18"),
        ("weight_decay", "Weight decay and the train-test gap"),
    )
)

# He et al. 2016, Table 6: CIFAR-10 test error (%) of the residual nets (best of 5 runs;
# ResNet-110 also reported as 6.61 +- 0.16 mean). Plain nets appear only in Fig. 6.
HE_TABLE6 = {
    "resnet20": 8.75,
    "resnet32": 7.51,
    "resnet44": 7.17,
    "resnet56": 6.97,
    "resnet110": 6.43,
}
HE_TABLE6_SOURCE = (
    "He et al. 2016, Table 6: CIFAR-10 test error (%), best of 5 runs; ResNet-110 "
    "6.43 (mean 6.61 +- 0.16). https://arxiv.org/abs/1512.03385"
)
HE2016_SLIDE = _numbered(
    (("he2016", "Deeper plain nets get worse, deeper ResNets better (He et al. Table 6, Fig. 6)"),),
    first=len(SLIDES) + 1,
)[0]
HE2016_EXPERIMENTS = ("he2016", "he2016_b512")  # the full recipe first, then its fallback
HE_RECIPE = (
    "He et al.: 64k iterations (~164 epochs), batch 128, SGD momentum 0.9, weight decay 1e-4, "
    "lr 0.1 divided by 10 at 32k and 48k iterations, fp32, original CIFAR-10 images."
)


def slide_index(value: Any, count: int = len(SLIDES)) -> int:
    """A slide number from a URL (1-based, as people count) -> 0-based index, clamped to
    `count` slides."""
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        number = 1
    return min(max(number, 1), count) - 1


def he2016_name(root: str | os.PathLike | None = None) -> str | None:
    """The He et al. reproduction shipped under `root` (he2016, else he2016_b512), or None."""
    for name in HE2016_EXPERIMENTS:
        if (_folder(name, root) / "experiment.json").is_file():
            return name
    return None


def lecture_slides(root: str | os.PathLike | None = None) -> tuple[Slide, ...]:
    """The slides the shipped results can fill (the reproduction's only when it is there),
    then "Your turn"."""
    shipped = SLIDES + ((HE2016_SLIDE,) if he2016_name(root) else ())
    return (*shipped, *_numbered((YOUR_TURN,), first=len(shipped) + 1))


YOUR_TURN = ("your_turn", "Your turn: write it, check it, train it")


def _folder(name: str, root: str | os.PathLike | None) -> Path:
    return Path(root or shipped_root()) / name


def degradation_curves(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Training and test error (%) per epoch of plain20/56 and resnet20/56.

    Returns:
        Long table: run, family ("plain" | "residual"), epoch, split ("train" | "test"),
        error (percent).
    """
    return _error_curves(load_experiment(_folder("degradation", root))["epochs"])


def _error_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    """Long table of training and test error (%) per run and epoch, from EpochEnd rows."""
    rows = []
    for _, row in epochs.iterrows():
        family = "plain" if row["run"].startswith("plain") else "residual"
        point = {"run": row["run"], "family": family, "epoch": int(row["epoch"])}
        rows.append({**point, "split": "train", "error": 100 * (1 - row["train_acc"])})
        if pd.notna(row.get("test_acc")):
            rows.append({**point, "split": "test", "error": 100 * (1 - row["test_acc"])})
    return pd.DataFrame(rows)


def degradation_summary(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Final training error and final/best test error (%) of each degradation run."""
    curves = degradation_curves(root)
    last_epoch = curves.groupby("run")["epoch"].transform("max")
    final = curves[curves["epoch"] == last_epoch].pivot_table(
        index="run", columns="split", values="error"
    )
    best_test = curves[curves["split"] == "test"].groupby("run")["error"].min()
    table = pd.DataFrame(
        {
            "final train error (%)": final["train"],
            "final test error (%)": final["test"],
            "best test error (%)": best_test,
        }
    )
    order = [run for run in ("plain20", "plain56", "resnet20", "resnet56") if run in table.index]
    return table.loc[order].round(2).reset_index().rename(columns={"run": "network"})


def _settings(record: dict[str, Any], folder: Path) -> Callable[[str], str]:
    """`setting(key)`: the value all runs of an experiment share, or each run's own value
    ("0.0005 (wd5e-4) / 0.0001 (wd1e-4)") where they differ; read from each run's
    config.json, since the record's recipe holds only the first run's settings."""
    configs = {}
    for member in record.get("runs", []):
        config = read_json(folder / member.get("run", "") / "config.json")
        if isinstance(config, dict):
            configs[member.get("label", member.get("run"))] = config
    recipe = record.get("recipe", {})

    def setting(key: str) -> str:
        values = {label: config.get(key, recipe.get(key)) for label, config in configs.items()}
        if len(set(map(str, values.values()))) <= 1:
            return str(recipe.get(key)) if not values else str(next(iter(values.values())))
        return " / ".join(f"{value} ({label})" for label, value in values.items())

    return setting


def recipe_text(name: str, root: str | os.PathLike | None = None) -> str:
    """One line saying which recipe and hardware produced an experiment's numbers."""
    record = load_experiment(_folder(name, root))["record"]
    recipe = record.get("recipe", {})
    if "analysis_of" in recipe:
        return recipe_text(recipe["analysis_of"], root)
    hardware = record.get("hardware", {})
    where = hardware.get("gpu") or f"{hardware.get('cpu', 'CPU')} CPU"
    data = (
        f"subset of {recipe['subset']:,} images"
        if recipe.get("subset")
        else "full CIFAR-10 (50,000 images)"
    )
    setting = _settings(record, _folder(name, root))
    parts = [
        f"{setting('epochs')} epochs on {data}",
        f"batch {setting('batch_size')}",
        f"{recipe.get('optimizer', 'sgd').upper()} lr {setting('lr')} ({setting('schedule')})",
        f"weight decay {setting('weight_decay')}",
        f"label smoothing {setting('label_smoothing')}",
        f"{setting('precision')}",
    ]
    return (
        f"Our recipe ({record.get('recipe_name')}): "
        + ", ".join(parts)
        + f"; {where}, torch {record.get('torch')}, {record.get('date', '')[:10]}, "
        f"{record.get('wall_seconds', 0):.0f} s wall. Command: `{record.get('command')}`"
    )


def results_table(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Our test errors beside He et al. Table 6 for the nets both have."""
    summary = degradation_summary(root).set_index("network")
    rows = []
    for network in summary.index:
        rows.append(
            {
                "network": network,
                "our best test error (%)": summary.loc[network, "best test error (%)"],
                "our final train error (%)": summary.loc[network, "final train error (%)"],
                "He et al. test error (%)": (
                    f"{HE_TABLE6[network]:.2f}"
                    if network in HE_TABLE6
                    else "not in Table 6 (Fig. 6 only)"
                ),
            }
        )
    return pd.DataFrame(rows)


def _params(run_dir: Path) -> int | None:
    try:
        spec = ArchSpec.from_dict(read_json(run_dir / "spec.json"))
    except (OSError, ValueError):
        return None
    return sum(p.numel() for p in build_model(spec).parameters())


def comparison_table(
    name: str = "cnn_vs_resnet", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Parameters, best test accuracy and training time of each run of an experiment."""
    folder = _folder(name, root)
    data = load_experiment(folder)
    epochs = data["epochs"]
    rows = []
    for member in data["record"]["runs"]:
        mine = epochs[epochs["run"] == member["label"]]
        rows.append(
            {
                "network": member["label"],
                "parameters": _params((folder / member["run"]).resolve()),
                "best test accuracy (%)": round(100 * float(mine["test_acc"].max()), 2),
                "training time (s)": round(float(mine["seconds"].sum()), 1),
                "epochs": int(mine["epoch"].max()),
            }
        )
    return pd.DataFrame(rows)


def weight_decay_gap(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per epoch and run: train accuracy minus test accuracy (percentage points)."""
    epochs = load_experiment(_folder("weight_decay", root))["epochs"]
    frame = epochs[["run", "epoch", "train_acc", "test_acc"]].dropna().copy()
    frame["gap"] = 100 * (frame["train_acc"] - frame["test_acc"])
    frame["train"] = 100 * frame.pop("train_acc")
    frame["test"] = 100 * frame.pop("test_acc")
    if _several_seeds(frame["run"]):
        frame["setting"] = frame["run"].map(setting_of)
    return frame.reset_index(drop=True)


def trained_responses(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Layer-response std of the trained degradation nets (He et al. Fig. 7), with position."""
    responses = load_experiment(_folder("layer_responses", root))["responses"]
    frame = responses.rename(columns={"model": "net"}).copy()
    frame["position"] = frame.groupby("net")["index"].transform(lambda s: s / max(s.max(), 1))
    return frame


def responses_sample(root: str | os.PathLike | None = None) -> dict | None:
    """The images the shipped Fig. 7 was measured on (layer_responses/sample.json), or None."""
    sample = read_json(_folder("layer_responses", root) / SAMPLE_FILE)
    return sample if isinstance(sample, dict) else None


def residual_block_dot(residual: bool = True) -> str:
    """Graphviz source of one basic block, with the skip drawn beside the two convs."""
    add = (
        '  add [label="+", shape=circle, style=filled, fillcolor="#1f77b4", fontcolor=white, fontsize=20];\n'
        '  x -> add [label="  identity x", color="#1f77b4", penwidth=3, fontcolor="#1f77b4"];\n'
        if residual
        else ""
    )
    last = "add" if residual else "bn2"
    return (
        "digraph block {\n"
        "  bgcolor=white; rankdir=TB;\n"
        "  node [shape=box, style=rounded, fontsize=16, fontname=Helvetica];\n"
        '  x [label="x  (C x H x W)", shape=plaintext];\n'
        '  conv1 [label="3x3 conv"]; bn1 [label="BatchNorm"]; relu1 [label="ReLU"];\n'
        '  conv2 [label="3x3 conv"]; bn2 [label="BatchNorm"];\n'
        + add
        + '  relu2 [label="ReLU"]; y [label="'
        + ("F(x) + x" if residual else "F(x)")
        + '", shape=plaintext];\n'
        "  x -> conv1 -> bn1 -> relu1 -> conv2 -> bn2;\n"
        + ('  bn2 -> add [label=" F(x)"];\n' if residual else "")
        + f"  {last} -> relu2 -> y;\n"
        "}\n"
    )


# Sentences and chart tables for the slides: one claim each, its numbers computed here --------
def results_long(results: pd.DataFrame) -> pd.DataFrame:
    """Test error (%) of each net, ours and He et al.'s where Table 6 has it (long table)."""
    rows = []
    for _, row in results.iterrows():
        network = row["network"]
        rows.append({"network": network, "source": "ours", "error": row["our best test error (%)"]})
        if network in HE_TABLE6:
            rows.append({"network": network, "source": "He et al.", "error": HE_TABLE6[network]})
    return pd.DataFrame(rows)


def results_sentence(results: pd.DataFrame) -> str:
    """Our ResNet errors beside Table 6's, and whether depth helps in both."""
    ours = results.set_index("network")["our best test error (%)"]
    shown = [n for n in ("resnet20", "resnet56") if n in ours.index]
    parts = [f"{n}: {ours[n]:.2f}% (He et al. {HE_TABLE6[n]:.2f}%)" for n in shown]
    text = "Best test error, ours beside He et al. Table 6 - " + "; ".join(parts) + "."
    if len(shown) == 2:
        deeper = ours["resnet56"] < ours["resnet20"]
        text += (
            " As in the paper, the 56-layer ResNet beats the 20-layer one (one run of each)."
            if deeper
            else " Unlike the paper, our 56-layer ResNet does not beat the 20-layer one (one run of each)."
        )
    gap = min(ours[n] - HE_TABLE6[n] for n in shown) if shown else None
    if gap is not None and gap > 0:
        text += f" Our errors are at least {gap:.1f} points higher (recipes under the table)."
    return text


def comparison_sentence(comparison: pd.DataFrame) -> str:
    """Accuracy, size and time of each net of a comparison, best first; with several seeds
    per net, the spread of the best test accuracy over the seeds instead."""
    if _several_seeds(comparison["network"]):
        accuracy = comparison.set_index("network")["best test accuracy (%)"]
        return spread_sentence(seed_spread(accuracy), "Best test accuracy")
    rows = comparison.sort_values("best test accuracy (%)", ascending=False)
    parts = [
        f"{r['network']} {r['best test accuracy (%)']:.1f}% with {int(r['parameters']):,} "
        f"parameters in {r['training time (s)']:.0f} s"
        for _, r in rows.iterrows()
    ]
    return "Best test accuracy: " + "; ".join(parts) + "."


def weight_decay_sentence(gap: pd.DataFrame) -> str:
    """Best test accuracy and last-epoch train-test gap per setting, and what one seed can say."""
    best = gap.groupby("run")["test"].max()
    last = gap.loc[gap.groupby("run")["epoch"].idxmax()].set_index("run")["gap"]
    if _several_seeds(best.index):
        gaps = seed_spread(last)
        final = "; ".join(f"{r.setting} {r.mean:.1f}" for r in gaps.itertuples())
        return (
            spread_sentence(seed_spread(best), "Best test accuracy")
            + f" Final train-test gap, mean over the seeds (points): {final}."
        )
    parts = [
        f"{run}: best {best[run]:.1f}%, final gap {last[run]:.1f} points" for run in best.index
    ]
    spread = float(best.max() - best.min())
    return (
        "; ".join(parts) + f". One run per setting: the {spread:.1f}-point difference in best test "
        "accuracy is not compared with a seed-to-seed spread, which these files do not measure."
    )


# He et al. 2016 reproduction: Table 6 beside ours, Fig. 6 from the files ------------------
def _depth(run: str) -> int:
    return int("".join(ch for ch in run if ch.isdigit()) or 0)


def he2016_curves(name: str, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Training and test error (%) per epoch of each net of the reproduction `name`.

    Returns:
        Long table: run, family ("plain" | "residual"), depth, epoch, split, error (percent).
    """
    curves = _error_curves(load_experiment(_folder(name, root))["epochs"])
    curves["depth"] = curves["run"].map(_depth)
    return curves.sort_values(["family", "depth", "epoch"], kind="stable").reset_index(drop=True)


def he2016_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Final training and test error of each net beside He et al. Table 6, row by row;
    "—" where Table 6 has no entry (the plain nets)."""
    last = curves[curves["epoch"] == curves.groupby("run")["epoch"].transform("max")]
    final = last.pivot_table(index="run", columns="split", values="error")
    rows = []
    for run in curves.drop_duplicates("run")["run"]:
        test = float(final.loc[run, "test"]) if "test" in final else float("nan")
        he = HE_TABLE6.get(run)
        rows.append(
            {
                "network": run,
                "our final train error (%)": round(float(final.loc[run, "train"]), 2),
                "our final test error (%)": round(test, 2),
                "He et al. Table 6 (%)": f"{he:.2f}" if he is not None else "—",
                "difference (points)": f"{test - he:+.2f}" if he is not None else "—",
            }
        )
    return pd.DataFrame(rows)


def _trend(errors: pd.Series) -> str:
    """How final training errors (indexed by depth) change with depth, in words."""
    steps = errors.sort_index().diff().dropna()
    shown = ", ".join(
        f"{depth} layers {value:.1f}%" for depth, value in errors.sort_index().items()
    )
    if len(steps) and (steps > 0).all():
        return f"rises with every step in depth ({shown})"
    if len(steps) and (steps < 0).all():
        return f"falls with every step in depth ({shown})"
    return f"does not change steadily with depth ({shown})"


def he2016_sentence(table: pd.DataFrame, recipe: dict[str, Any]) -> str:
    """Whether plain nets' final training error rises with depth and ResNets' falls, how far
    our test errors are from Table 6, and which recipe ran."""
    frame = table.set_index("network")
    train = frame["our final train error (%)"]
    depths = pd.Series({run: _depth(run) for run in frame.index})
    plain = train[[r.startswith("plain") for r in frame.index]]
    residual = train[[r.startswith("resnet") for r in frame.index]]
    parts = [
        f"Final training error of the plain nets {_trend(plain.set_axis(depths[plain.index]))}",
        f"of the ResNets {_trend(residual.set_axis(depths[residual.index]))}.",
    ]
    compared = [run for run in frame.index if run in HE_TABLE6]
    if compared:
        gaps = [
            abs(frame.loc[run, "our final test error (%)"] - HE_TABLE6[run]) for run in compared
        ]
        parts.append(
            f"Our final test errors are on average {sum(gaps) / len(gaps):.2f} points from "
            f"Table 6 (mean absolute difference over {len(compared)} ResNets)."
        )
    parts.append(
        f"Recipe: batch {recipe.get('batch_size')}, {recipe.get('epochs')} epochs, "
        f"lr {recipe.get('lr')} divided by 10 after epochs "
        f"{', '.join(map(str, recipe.get('milestones') or []))}, {recipe.get('precision')}."
    )
    return "; ".join(parts[:2]) + " " + " ".join(parts[2:])


# Seeds: a difference beside the seed-to-seed spread -----------------------------------------
def seed_spread(values: pd.Series) -> pd.DataFrame:
    """Per setting (the run label without its seed): seeds, mean, min and max of `values`
    (a Series indexed by run label)."""
    frame = pd.DataFrame({"setting": [setting_of(r) for r in values.index], "value": values})
    grouped = frame.groupby("setting", sort=False)["value"]
    table = pd.DataFrame(
        {
            "seeds": grouped.size(),
            "mean": grouped.mean(),
            "min": grouped.min(),
            "max": grouped.max(),
        }
    )
    return table.reset_index()


def spread_sentence(spread: pd.DataFrame, what: str) -> str:
    """Mean and min-max of each setting over its seeds, and whether the difference between
    the means exceeds the seed-to-seed spread (the largest min-max range of a setting)."""
    parts = [
        f"{row.setting} mean {row.mean:.1f}% over {row.seeds} seeds "
        f"(min-max {row.min:.1f}-{row.max:.1f})"
        for row in spread.itertuples()
    ]
    difference = float(spread["mean"].max() - spread["mean"].min())
    noise = float((spread["max"] - spread["min"]).max())
    verdict = "exceeds" if difference > noise else "does not exceed"
    return (
        f"{what}: " + "; ".join(parts) + f". The {difference:.1f}-point difference between the "
        f"means {verdict} the seed-to-seed spread (up to {noise:.1f} points within a setting)."
    )


def _several_seeds(labels: pd.Series | list[str]) -> bool:
    """Whether some setting has more than one run among these (repeatable) run labels."""
    runs = set(labels)
    return len(runs) > len({setting_of(label) for label in runs})
