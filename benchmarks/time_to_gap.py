"""Time to gap: how long after Start the live demo shows what it is for.

A ready choice of the Train page is queued as the page queues it (one lockstep group through
the job queue, a fresh worker process), and per seed this records the wall time from Start
(data loading included) until the residual net's running-mean training loss is 0.2 below the
plain net's and stays below for the rest of the run (`resnet_core.training.gap`); for a
choice with two plain nets, also until the deeper plain net's loss is 0.2 above the
shallower one's. Prints a table and writes `DIR/time_to_gap.json`: a list of rows, one per
recipe, seed and lever, each with the machine and versions (a second run into the same
folder adds its rows).

    python benchmarks/time_to_gap.py --list
    python benchmarks/time_to_gap.py --recipe NAME --seeds 3 --out DIR [--data-dir D]
    python benchmarks/time_to_gap.py --recipe NAME --set batch_size=64 --set lr=0.1   # a lever
    python benchmarks/time_to_gap.py --recipe NAME --widths 8,16,32   # narrower nets, same depths
    python benchmarks/time_to_gap.py --recipe NAME --concurrent   # nets side by side, 1 thread each
    python benchmarks/time_to_gap.py --recipe NAME --net resnet56=resnet56-zeroinit  # another net
    python benchmarks/time_to_gap.py --recipe NAME --busy 2    # two other processes use the cores
    python benchmarks/time_to_gap.py --recipe NAME --stop-after 300  # seek the gap in 5 min only
    python benchmarks/time_to_gap.py --recipe NAME --dataset synthetic --set subset=512  # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train_throughput import _cpu_name  # noqa: E402  (the same words in every benchmark)

from resnet_core.common.device import machine_summary  # noqa: E402
from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.nets.spec import resolve_spec  # noqa: E402
from resnet_core.training.choices import READY_CHOICES  # noqa: E402
from resnet_core.training.gap import MARGIN, demo_pairs, gap_opened  # noqa: E402
from resnet_core.training.jobs import JobQueue  # noqa: E402

PEAK_AFTER = 10  # the first steps' loss is high for every net; a spike comes later


def _value(text: str):
    """'64' -> 64, '0.1' -> 0.1, 'true' -> True, 'bf16' -> 'bf16'."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _nets(args: argparse.Namespace) -> dict[str, str]:
    """The `--net OLD=NEW` levers: which net trains in place of which."""
    return dict(item.partition("=")[::2] for item in args.net)


def _configs(args: argparse.Namespace, seed: int) -> list[dict]:
    overrides = {"device": "cpu", "dataset": args.dataset, "seed": seed}
    if args.data_dir:
        overrides["data_dir"] = str(args.data_dir)
    for item in args.set:
        key, _, text = item.partition("=")
        overrides[key] = _value(text)
    configs = [{**member, **overrides} for member in READY_CHOICES[args.recipe]]
    for config in configs:
        config["model"] = _nets(args).get(config["model"], config["model"])
    if args.widths:  # the same depths, other widths: the model becomes a spec
        widths = tuple(int(w) for w in args.widths.split(","))
        for config in configs:
            config["model"] = resolve_spec(config["model"], widths=widths).to_dict()
    return configs


def _submit(args: argparse.Namespace, configs: list[dict], scratch: str) -> list:
    """Queue the nets as the page does (one lockstep group), or with `--concurrent` each in a
    queue of its own, so that they train at once, each worker on one thread."""
    if not args.concurrent:
        queue = JobQueue(scratch)
        return [(queue, queue.submit_group(configs))]
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the workers started below
    queues = [JobQueue(Path(scratch) / f"net{i}") for i in range(len(configs))]
    return [(queue, queue.submit(config)) for queue, config in zip(queues, configs)]


def _member(folder: Path, net: str, queued: float) -> tuple[pd.DataFrame, str, list[str]]:
    """One net's step rows (`elapsed` counted from the moment the job was queued), the
    precision it trained in ("auto" settled) and what its notes said."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    steps = pd.DataFrame(
        [{"net": net, "step": r["step"], "loss": r["loss"], "elapsed": r["time"] - queued,
          "images_per_s": r.get("images_per_s")} for r in records if r.get("event") == "step"]
    )  # fmt: skip
    precision = json.loads((folder / "config.json").read_text())["precision"]
    return steps, precision, [r["message"] for r in records if r.get("event") == "note"]


def _busy(stop) -> None:
    """One process that keeps a core busy until `stop` is set (a class's other work)."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _stop(queue: JobQueue, job_id: str, wait_s: float = 60) -> None:
    """Cancel the job if it still runs, and wait (bounded) until its worker has stopped."""
    queue.cancel(job_id)
    deadline = time.time() + wait_s
    while queue.get(job_id).active and time.time() < deadline:
        queue.pump()
        time.sleep(0.2)


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """Train the recipe once with `seed`; the row of the table."""
    configs = _configs(args, seed)
    nets = [_nets(args).get(m["model"], m["model"]) for m in READY_CHOICES[args.recipe]]
    with tempfile.TemporaryDirectory() as scratch:
        queued = time.time()
        jobs = _submit(args, configs, scratch)
        try:
            while any(queue.get(job.job_id).active for queue, job in jobs):
                if args.stop_after and time.time() - queued > args.stop_after:
                    break  # the finally cancels it: the gap is sought in what ran so far
                for queue, _ in jobs:
                    queue.pump()
                time.sleep(0.1)
        finally:  # interrupted: the worker outlives this process unless told to stop
            for queue, job in jobs:
                _stop(queue, job.job_id)
        wall = time.time() - queued
        folders = [queue.runs_dir / run_id for queue, job in jobs
                   for run_id in queue.get(job.job_id).run_ids]  # fmt: skip
        state = ",".join(sorted({queue.get(job.job_id).state for queue, job in jobs}))
        members = {net: _member(folder, net, queued) for folder, net in zip(folders, nets)}
        steps = pd.concat([rows for rows, _, _ in members.values()], ignore_index=True)
    residual = {net: resolve_spec(net).residual for net in nets}
    gap_pair, deeper_pair = demo_pairs(
        residual, {net: resolve_spec(net).num_layers() for net in nets}
    )
    row = {"recipe": args.recipe, "seed": seed, "state": state, "wall_s": round(wall, 1),
           "configs": [{k: v for k, v in c.items() if k != "data_dir"} for c in configs],
           "precision": {net: precision for net, (_, precision, _) in members.items()},
           "notes": {net: notes for net, (_, _, notes) in members.items()}}  # fmt: skip
    for key, pair in (("time_to_gap", gap_pair), ("deeper_plain_worse", deeper_pair)):
        if pair is None:
            continue
        found = gap_opened(steps, *pair)
        row[f"{key}_s"] = None if found.seconds is None else round(found.seconds, 1)
        row[f"{key}_step"] = found.step
        row[f"{key}_nets"] = list(pair)
    last = steps.sort_values("step").groupby("net").tail(10).groupby("net")
    row["final_loss"] = {net: round(value, 3) for net, value in last["loss"].mean().items()}
    row["images_per_s"] = {
        net: round(value, 1) for net, value in last["images_per_s"].median().items()
    }
    row["steps"] = int(steps["step"].max())
    row["peak_loss"] = peak_losses(steps)
    return row


def peak_losses(steps: pd.DataFrame, after: int = PEAK_AFTER) -> dict[str, list]:
    """Each net's highest step loss after step `after` and the step it was at: a spike that
    the running mean of the gap test smooths away but a class watching the curve sees."""
    late = steps[steps["step"] > after]
    worst = late.loc[late.groupby("net")["loss"].idxmax()]
    return {row.net: [round(float(row.loss), 3), int(row.step)] for row in worst.itertuples()}


def _table(rows: list[dict]) -> str:
    lines = ["| recipe | seed | time to gap | step | deeper plain worse | final losses | images/s per net | wall |",
             "|---|---:|---:|---:|---:|---|---|---:|"]  # fmt: skip
    for row in rows:
        gap = "never" if row.get("time_to_gap_s") is None else f"{row['time_to_gap_s']:.0f} s"
        deeper = row.get("deeper_plain_worse_s", "n/a") if "deeper_plain_worse_s" in row else "n/a"
        deeper = "never" if deeper is None else (f"{deeper:.0f} s" if deeper != "n/a" else deeper)
        losses = ", ".join(f"{n} {v:.2f}" for n, v in row["final_loss"].items())
        speeds = ", ".join(f"{n} {v:.0f}" for n, v in row["images_per_s"].items())
        lines.append(f"| {row['recipe']} | {row['seed']} | {gap} | {row.get('time_to_gap_step')} | "
                     f"{deeper} | {losses} | {speeds} | {row['wall_s']:.0f} s |")  # fmt: skip
    times = [row["time_to_gap_s"] for row in rows if row.get("time_to_gap_s") is not None]
    median = statistics.median(times) if len(times) == len(rows) else None
    lines.append(f"\nmedian time to gap: {'n/a (a seed never opened it)' if median is None else f'{median:.0f} s'}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the ready choices' names")
    parser.add_argument("--recipe", choices=list(READY_CHOICES), metavar="NAME")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds N, N+1, ...")
    parser.add_argument("--out", type=Path, help="folder for time_to_gap.json")
    parser.add_argument("--data-dir", type=Path, help="CIFAR-10 folder")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "synthetic"))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a lever: change one TrainConfig field of every net")  # fmt: skip
    parser.add_argument("--widths", help="a lever: channels per stage of every net, e.g. 8,16,32")
    parser.add_argument("--net", action="append", default=[], metavar="OLD=NEW",
                        help="a lever: train net NEW where the recipe has OLD")  # fmt: skip
    parser.add_argument("--concurrent", action="store_true",
                        help="a lever: the nets train at once, one thread each, not in turn")  # fmt: skip
    parser.add_argument("--busy", type=int, default=0, help="other processes using the cores")
    parser.add_argument("--stop-after", type=float, default=None, metavar="SECONDS",
                        help="cancel each run this long after Start (its state says so)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.list or not args.recipe:
        print("\n".join(READY_CHOICES))
        return 0
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.busy)]  # fmt: skip
    for hog in hogs:
        hog.start()
    try:
        rows = [
            run_seed(args, seed) for seed in range(args.first_seed, args.first_seed + args.seeds)
        ]
    finally:
        stop.set()
        for hog in hogs:
            hog.join()
    made = {"when": datetime.now().isoformat(timespec="seconds"), "machine": machine_summary(),
            "platform": platform.platform(), "torch": str(torch.__version__),
            "threads": torch.get_num_threads(), "cpu": _cpu_name()}  # fmt: skip
    for row in rows:
        levers = args.set + [f"widths={args.widths}"] * bool(args.widths)
        levers += [f"net {item}" for item in args.net]
        levers += ["concurrent, 1 thread each"] * args.concurrent
        row.update({"levers": levers, "busy": args.busy, "margin": MARGIN,
                    "stop_after_s": args.stop_after, **made})  # fmt: skip
    print(_table(rows))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "time_to_gap.json"
        old = json.loads(path.read_text()) if path.exists() else []
        write_json_atomic(path, old + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
