"""Time-to-accuracy on CIFAR-10 for the speedrun recipes, with airbench94 as the yardstick.

Each preset's recipe is `resnet_core.training.speedruns.SPEEDRUNS[preset]`; targets: ResNet-18
(CIFAR stem) 94 %, ResNet-20 91.25 % (He et al. 2016, https://arxiv.org/abs/1512.03385,
Table 6). Every run evaluates after each epoch; per seed it reports time to target (the
training seconds, evaluation excluded, until the test accuracy first reaches the target),
best accuracy and s/epoch, and the median over the seeds.

With `--airbench SRC` (the airbench 0.1.8 sdist or source tree), airbench94 trains on the same
data in the same invocation (benchmarks/airbench_side.py). It reaches 94.0 % on the original
binary CIFAR-10; if it falls short by d points on our JPEG copy, the copy costs about d
points, and the table shows our target moved down by d beside the published one.

    python benchmarks/speedrun.py --preset resnet18 --seeds 3 --airbench .device/airbench-0.1.8.tar.gz \
        --data-dir DIR --out r18.json
    python benchmarks/speedrun.py --preset resnet18 --ablation --seeds 1 --data-dir DIR
    python benchmarks/speedrun.py --preset resnet20 --device cpu --no-compile --epochs 1 \
        --subset 256 --seeds 1     # a smoke run on a CPU

Results go to stdout as a markdown table and, with --out, as JSON (versions, hardware, date,
command line, one row per run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from airbench_side import PUBLISHED_ACCURACY, run_airbench, write_airbench_data  # noqa: E402

from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training.callbacks import Callback  # noqa: E402
from resnet_core.training.config import COMPILE_MODES, TrainConfig  # noqa: E402
from resnet_core.training.data import load_dataset  # noqa: E402
from resnet_core.training.events import EpochEnd  # noqa: E402
from resnet_core.training.speedruns import SPEEDRUNS, Speedrun  # noqa: E402
from resnet_core.training.trainer import Trainer  # noqa: E402

FULL = "full recipe"


class _Stop:
    """Cancel flag for a run: set at the target (with --stop-at-target) or at the time cap."""

    def __init__(self, time_cap: float) -> None:
        self.event = threading.Event()
        self.deadline = time.perf_counter() + time_cap

    def is_set(self) -> bool:
        return self.event.is_set() or time.perf_counter() > self.deadline


class _Watch(Callback):
    """Records and prints each epoch; sets `stop` at the target when asked to."""

    def __init__(self, target: float, stop: _Stop | None) -> None:
        self.target, self.stop = target, stop
        self.rows: list[dict] = []
        self.train_seconds = 0.0

    def on_epoch(self, trainer: Trainer, event: EpochEnd) -> None:
        self.train_seconds += event.seconds
        row = {
            "epoch": event.epoch,
            "test_acc": event.test_acc,
            "train_seconds": round(self.train_seconds, 3),
            "wall_seconds": round(event.elapsed, 3),
        }
        self.rows.append(row)
        accuracy = "n/a" if event.test_acc is None else f"{event.test_acc:.4f}"
        print(
            f"  epoch {event.epoch:3d}  test_acc {accuracy}  train {self.train_seconds:7.2f} s",
            flush=True,
        )
        reached = event.test_acc is not None and event.test_acc >= self.target
        if reached and self.stop is not None:
            self.stop.event.set()


def time_to(rows: list[dict], target: float) -> float | None:
    """Training seconds at the first epoch whose test accuracy reaches `target`."""
    for row in rows:
        if row["test_acc"] is not None and row["test_acc"] >= target:
            return row["train_seconds"]
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--preset", choices=sorted(SPEEDRUNS), default="resnet18")
    add("--seeds", type=int, default=3, help="runs per variant, seeds 0..N-1")
    add("--data-dir", default=None)
    add("--dataset", default="cifar10", help="cifar10, or synthetic for a smoke run")
    add("--device", default=None, help="override the recipe's device (cpu for a smoke run)")
    add("--epochs", type=int, default=None, help="override the recipe's schedule length")
    add("--subset", type=int, default=None, help="train on this many images (smoke runs)")
    add("--batch-size", type=int, default=None)
    add("--lr", type=float, default=None)
    add("--precision", default=None)
    add("--target", type=float, default=None, help="override the recipe's target accuracy")
    add("--no-compile", action="store_true", help="eager mode (the CPU smoke run)")
    add("--compile-mode", choices=COMPILE_MODES, default=None, help="override; implies compile")
    add("--time-cap", type=float, default=300.0, help="seconds of wall time per run")
    add("--stop-at-target", action="store_true", help="end each run at the target")
    add("--warmup-run", action="store_true", help="one short untimed run first (compile, cuDNN)")
    add("--ablation", action="store_true", help="also each ingredient taken out, one at a time")
    add("--airbench", default=None, metavar="SRC", help="airbench sdist or source: run it too")
    add("--airbench-timeout", type=float, default=300.0, help="seconds for all its runs")
    add("--jpeg-gap-from", default=None, metavar="JSON", help="reuse airbench's d from a result")
    add("--out", default=None, help="write results as JSON here")
    return parser


def _changes(args: argparse.Namespace) -> dict:
    """TrainConfig changes from the command line, applied after an ingredient is taken out."""
    changes = {"eval_every": 1, "dataset": args.dataset, "data_dir": args.data_dir}
    named = {"device": args.device, "epochs": args.epochs, "subset": args.subset}
    named.update(batch_size=args.batch_size, lr=args.lr, precision=args.precision)
    changes.update({key: value for key, value in named.items() if value is not None})
    if args.compile_mode is not None:
        changes.update(compile=True, compile_mode=args.compile_mode)
    if args.no_compile:
        changes["compile"] = False
    return changes


def _variants(recipe: Speedrun, ablation: bool) -> list[tuple[str, tuple[str, ...]]]:
    variants = [(FULL, ())]
    if ablation:
        variants += [(f"without {item.name}", (item.name,)) for item in recipe.ingredients]
    return variants


def run_once(config: TrainConfig, data, target: float, args: argparse.Namespace) -> dict:
    """One timed run; its per-epoch rows and summary."""
    stop = _Stop(args.time_cap)
    watch = _Watch(target, stop if args.stop_at_target else None)
    started = time.perf_counter()
    result = Trainer(config, [watch], cancel=stop, data=data).fit()
    rows = watch.rows
    accuracies = [row["test_acc"] for row in rows if row["test_acc"] is not None]
    train_seconds = rows[-1]["train_seconds"] if rows else 0.0
    return {
        "seed": config.seed,
        "state": result.state,
        "time_to_target_s": time_to(rows, target),
        "best_acc": max(accuracies, default=None),
        "final_acc": accuracies[-1] if accuracies else None,
        "train_seconds": train_seconds,
        "s_per_epoch": round(train_seconds / len(rows), 3) if rows else None,
        "epochs_run": len(rows),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "epochs": rows,
    }


def _median(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> dict:
    """Median over seeds; time to target only if every seed reached it."""
    keys = ("best_acc", "final_acc", "train_seconds", "s_per_epoch")
    summary = {key: _median(runs, key) for key in keys}
    reached = all(run["time_to_target_s"] is not None for run in runs)
    summary["time_to_target_s"] = _median(runs, "time_to_target_s") if reached else None
    summary["reached"] = f"{sum(run['time_to_target_s'] is not None for run in runs)}/{len(runs)}"
    return summary


def jpeg_gap(airbench: dict | None) -> float | None:
    """d = 0.940 - airbench94's median accuracy on our copy (None without a measurement)."""
    accuracies = [run["accuracy"] for run in (airbench or {}).get("runs", [])]
    if not accuracies:
        return None
    return round(PUBLISHED_ACCURACY - statistics.median(accuracies), 4)


def _airbench(args: argparse.Namespace, data) -> dict | None:
    if args.jpeg_gap_from:
        measured = json.loads(Path(args.jpeg_gap_from).read_text()).get("airbench")
        return dict(measured, reused_from=args.jpeg_gap_from) if measured else None
    if not args.airbench:
        return None
    with tempfile.TemporaryDirectory(prefix="airbench-data-") as folder:
        write_airbench_data(data, folder)
        return run_airbench(folder, list(range(args.seeds)), args.airbench, args.airbench_timeout)


def environment() -> dict:
    """Versions, hardware, date and the command line (no machine paths) of this run."""
    cuda = torch.cuda.is_available()
    return {
        "versions": {
            "torch": str(torch.__version__),
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
        },
        "hardware": torch.cuda.get_device_name(0) if cuda else _cpu(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": _command(sys.argv),
    }


def _recorded(config: TrainConfig) -> dict:
    """The config as recorded: the data folder by name only."""
    data = config.to_dict()
    if data.get("data_dir"):
        data["data_dir"] = Path(data["data_dir"]).name
    return data


def _command(argv: list[str]) -> str:
    """The command line with no machine paths: a path inside the repository relative to
    it, any other by its last part."""
    parts = []
    for arg in argv:
        path = Path(arg)
        if path.is_absolute():
            try:
                arg = str(path.relative_to(REPO))
            except ValueError:
                arg = path.name
        parts.append(arg)
    return " ".join(parts)


def _cpu() -> str:
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict) -> str:
    """The markdown table of a result: one row per run, the median per variant, airbench."""
    target, adjusted = result["target"], result.get("adjusted_target")
    head = f"| preset | variant | seed | reached {target:.2%} | time to target (s) | "
    if adjusted is not None:
        head += f"time to {adjusted:.2%} (s) | "
    head += "best acc | final acc | train s | s/epoch |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for variant in result["variants"]:
        for run in variant["runs"] + [dict(variant["median"], seed="median")]:
            cells = [result["preset"], variant["name"], str(run["seed"])]
            cells.append(run.get("reached") or ("no" if run["time_to_target_s"] is None else "yes"))
            cells.append(_fmt(run["time_to_target_s"], ".2f"))
            if adjusted is not None:
                cells.append(_fmt(run.get("time_to_adjusted_target_s"), ".2f"))
            cells += [_fmt(run["best_acc"]), _fmt(run["final_acc"])]
            cells += [_fmt(run["train_seconds"], ".2f"), _fmt(run["s_per_epoch"], ".3f")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _ablation_lines(result) + _airbench_lines(result))


def _ablation_lines(result: dict) -> list[str]:
    """Medians per variant, and what taking each ingredient out changed."""
    variants = result["variants"]
    if len(variants) < 2:
        return []
    full = variants[0]["median"]
    lines = ["", "| variant | best acc | change vs full (points) | time to target (s) | train s |"]
    lines.append("|---|---|---|---|---|")
    for variant in variants:
        median = variant["median"]
        change = None
        if median["best_acc"] is not None and full["best_acc"] is not None:
            change = 100 * (median["best_acc"] - full["best_acc"])
        cells = [variant["name"], _fmt(median["best_acc"]), _fmt(change, "+.2f")]
        cells += [_fmt(median["time_to_target_s"], ".2f"), _fmt(median["train_seconds"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _airbench_lines(result: dict) -> list[str]:
    airbench = result.get("airbench")
    if airbench is None:
        return ["", "airbench94: not run (pass --airbench SRC)"]
    lines = ["", f"airbench94 {airbench['version']}: {airbench['status']} {airbench['reason']}"]
    if airbench.get("reused_from"):
        lines[-1] += f" (measured by the run in {airbench['reused_from']})"
    if airbench["runs"]:
        lines += ["", "| airbench94 seed | accuracy (TTA 2) | seconds (its own) | wall s |"]
        lines.append("|---|---|---|---|")
        for run in airbench["runs"]:
            cells = [str(run["seed"]), _fmt(run["accuracy"]), _fmt(run["seconds"], ".2f")]
            lines.append("| " + " | ".join(cells + [_fmt(run["wall_seconds"], ".2f")]) + " |")
    if result.get("jpeg_gap") is not None:
        lines += ["", _gap_sentence(result)]
    return lines


def _gap_sentence(result: dict) -> str:
    d, target = result["jpeg_gap"], result["target"]
    median = f"airbench94's median on this copy is {PUBLISHED_ACCURACY - d:.2%}"
    if d <= 0:
        return f"{median}, not below its published {PUBLISHED_ACCURACY:.1%}: target unchanged."
    return (
        f"{median}, d = {d * 100:.2f} points below its published {PUBLISHED_ACCURACY:.1%}: "
        f"the JPEG copy costs about d, so the target {target:.2%} moves to "
        f"{result['adjusted_target']:.2%}."
    )


def _adjust(result: dict) -> None:
    """Add d, the adjusted target, and each run's time to it."""
    d = jpeg_gap(result.get("airbench"))
    result["jpeg_gap"] = d
    if d is None:
        result["adjusted_target"] = None
        return
    adjusted = round(result["target"] - max(d, 0.0), 4)
    result["adjusted_target"] = adjusted
    for variant in result["variants"]:
        for run in variant["runs"]:
            run["time_to_adjusted_target_s"] = time_to(run["epochs"], adjusted)
        times = [run["time_to_adjusted_target_s"] for run in variant["runs"]]
        reached = all(value is not None for value in times)
        variant["median"]["time_to_adjusted_target_s"] = (
            statistics.median(times) if reached else None
        )


def _save(result: dict, out: str | None) -> None:
    """Write the result so far (each finished run), so that a run cut short keeps them."""
    if out:
        write_json_atomic(out, result)


def _run_variants(recipe: Speedrun, result: dict, data, args: argparse.Namespace) -> None:
    """Every variant's seeds in turn, saving the result after each run."""
    changes = _changes(args)
    for name, without in _variants(recipe, args.ablation):
        config = recipe.train_config(without, **changes)
        runs: list[dict] = []
        variant = {"name": name, "config": _recorded(config), "runs": runs}
        for seed in range(args.seeds):
            print(f"{args.preset} {name} seed {seed}", flush=True)
            runs.append(run_once(config.replace(seed=seed), data, result["target"], args))
            _save(dict(result, variants=[*result["variants"], variant], partial=True), args.out)
        result["variants"].append(dict(variant, median=summarize(runs)))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    recipe = SPEEDRUNS[args.preset]
    target = args.target if args.target is not None else recipe.target
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    data = load_dataset(args.dataset, args.data_dir, subset=args.subset)
    result = {"preset": args.preset, "target": target, **environment(), "variants": []}
    # airbench first: short, bounded by its own timeout, and its d is kept if ours is cut short
    result["airbench"] = _airbench(args, data)
    print("\n".join(_airbench_lines(result)), flush=True)
    _save(dict(result, partial=True), args.out)
    if args.warmup_run:
        config = recipe.train_config(**_changes(args))
        Trainer(config.replace(epochs=1, eval_every=1000), data=data).fit()
    _run_variants(recipe, result, data, args)
    _adjust(result)
    text = table(result)
    print(text, flush=True)
    result.update(table=text, partial=False)
    _save(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
