"""Plain-20 vs ResNet-20 trained one after the other (two queued runs) against one lockstep
group (one job, the same batches, one step of each in turn), through the app's job queue.

Both ways run the Train page's "plain-20 vs ResNet-20 side by side" settings (10,000
CIFAR-10 images, 2 epochs, batch 128) in a fresh worker process per job, as the app does.
Measured from the moment the jobs are queued: when each net logs its first step (both
curves on screen), and when both have finished.

    python benchmarks/lockstep.py --data-dir DIR                  # ~3-5 min on 2 cores
    python benchmarks/lockstep.py --data-dir DIR --out FILE.json  # also write the figures
    python benchmarks/lockstep.py --dataset synthetic --subset 500 --epochs 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resnet_core.common.device import machine_summary  # noqa: E402
from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training.choices import READY_CHOICES, SHALLOW_PAIR  # noqa: E402
from resnet_core.training.jobs import JobQueue  # noqa: E402

CHOICE = SHALLOW_PAIR


def _configs(args: argparse.Namespace) -> list[dict]:
    overrides = {"device": "cpu", "dataset": args.dataset, "epochs": args.epochs}
    if args.subset:
        overrides["subset"] = args.subset
    if args.data_dir:
        overrides["data_dir"] = str(args.data_dir)
    return [{**member, **overrides} for member in READY_CHOICES[CHOICE]]


def _first_step_time(run_dir: Path) -> float | None:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        record = json.loads(line)
        if record.get("event") == "step":
            return float(record["time"])
    return None


def _run(configs: list[dict], lockstep: bool) -> dict:
    """Queue the nets (as one group or as separate jobs), pump until all end; seconds."""
    with tempfile.TemporaryDirectory() as scratch:
        queue = JobQueue(scratch)
        queued = time.time()
        if lockstep:
            jobs = [queue.submit_group(configs)]
        else:
            jobs = [queue.submit(config) for config in configs]
        folders = [queue.runs_dir / run_id for job in jobs for run_id in job.run_ids]
        while any(queue.get(job.job_id).active for job in jobs):
            queue.pump()
            time.sleep(0.1)
        ended = time.time()
        states = [queue.get(job.job_id).state for job in jobs]
        firsts = [_first_step_time(folder) for folder in folders]
    if states != ["done"] * len(jobs) or None in firsts:
        raise RuntimeError(f"the runs did not finish: {states}")
    return {
        "wall_s": ended - queued,
        "first_steps_s": [first - queued for first in firsts],
        "both_curves_s": max(firsts) - queued,
    }


def _table(results: dict[str, dict]) -> str:
    sequential, lockstep = results["one after the other"], results["lockstep group"]
    rows = [
        "| way | both curves on screen after | all done after | wall ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, result in results.items():
        ratio = result["wall_s"] / sequential["wall_s"]
        rows.append(
            f"| {name} | {result['both_curves_s']:.1f} s | {result['wall_s']:.1f} s | {ratio:.2f}x |"
        )
    rows.append(
        f"\nlockstep / sequential wall time: {lockstep['wall_s'] / sequential['wall_s']:.2f}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="CIFAR-10 folder")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "synthetic"))
    parser.add_argument("--subset", type=int, help="training images (default: the recipe's)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    configs = _configs(args)
    results = {
        "one after the other": _run(configs, lockstep=False),
        "lockstep group": _run(configs, lockstep=True),
    }
    table = _table(results)
    print(table)
    if args.out:
        record = {
            "benchmark": "lockstep",
            "when": datetime.now().isoformat(timespec="seconds"),
            "machine": machine_summary(),
            "platform": platform.platform(),
            "torch": str(torch.__version__),
            "configs": [{k: v for k, v in c.items() if k != "data_dir"} for c in configs],
            "results": results,
            "table": table,
        }
        write_json_atomic(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
