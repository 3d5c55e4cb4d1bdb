"""Per-step training time of the speedrun recipes: eager against torch.compile against CUDA
graphs, for each net and batch size, side by side in one invocation.

A step is what training repeats: the next batch from our device-resident loader (crop, flip,
normalise on the device) and `Trainer.train_step` (forward, backward, optimizer, EMA) with
the recipe's settings, on synthetic images (a step's time does not depend on what the
pixels show). Each (net, batch, mode) runs in a fresh process, so no compiled code or
cached graph carries over; the first steps (compilation, graph capture) are reported
apart as setup seconds, then `--steps` steps are timed between two synchronisations.

    python benchmarks/step_time.py --out benchmarks/results/DIR/step_time.json   # on a GPU
    python benchmarks/step_time.py --device cpu --nets resnet20 --batch-sizes 64 --steps 5 \
        --warmup 2 --modes eager compile     # a smoke run on a CPU

Modes: eager (no compile), compile (torch.compile, mode "default": fused kernels),
graphs (torch.compile "reduce-overhead": each step replayed as CUDA graphs; CUDA only).
The JSON (with --out) is rewritten after every measurement, so a run cut short keeps what
it finished; it records versions, hardware, date and the command, with no machine paths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from speedrun import environment  # noqa: E402

from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training.speedruns import SPEEDRUNS  # noqa: E402
from resnet_core.training.trainer import Trainer  # noqa: E402

MODES = {
    "eager": {"compile": False},
    "compile": {"compile": True, "compile_mode": "default"},
    "graphs": {"compile": True, "compile_mode": "reduce-overhead"},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_one(net: str, batch_size: int, mode: str, args: argparse.Namespace) -> dict:
    """Time one (net, batch, mode) in this process (the child side of `measure`)."""
    config = SPEEDRUNS[net].train_config(
        **MODES[mode],
        batch_size=batch_size,
        dataset="synthetic",
        subset=batch_size * (args.warmup + args.steps + 1),
        epochs=1,
        device=args.device,
    )
    started = time.perf_counter()
    trainer = Trainer(config).setup()
    trainer.state.model.train()
    batches = iter(trainer.state.train_loader)
    for _ in range(args.warmup):
        trainer.train_step(*next(batches))
    _sync(trainer.state.device)
    setup = time.perf_counter() - started
    timed_from = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(*next(batches))
    _sync(trainer.state.device)
    seconds = time.perf_counter() - timed_from
    return {
        "ms_per_step": 1000 * seconds / args.steps,
        "images_per_s": args.steps * batch_size / seconds,
        "setup_s": setup,
        "compiled": trainer.state.compiling.forward is not trainer.state.compiling.eager,
    }


def measure(net: str, batch_size: int, mode: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh Python process; a failure is a row saying why."""
    row = {"net": net, "batch_size": batch_size, "mode": mode}
    if mode == "graphs" and not args.device.startswith("cuda"):
        return {**row, "status": "skipped", "reason": "CUDA graphs need a CUDA device"}
    command = [sys.executable, __file__, "--one", json.dumps([net, batch_size, mode])]
    command += ["--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=REPO, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {**row, "status": "failed", "reason": f"timed out after {args.timeout} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**row, "status": "failed", "reason": tail}
    return {**row, "status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each measured row with its speed relative to eager at the same net and batch."""
    eager = {
        (row["net"], row["batch_size"]): row["images_per_s"]
        for row in rows
        if row["mode"] == "eager" and row["status"] == "ok"
    }
    out = []
    for row in rows:
        base = eager.get((row["net"], row["batch_size"]))
        ratio = row["images_per_s"] / base if base and row["status"] == "ok" else None
        out.append({**row, "vs_eager": ratio})
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| net | batch | mode | ms/step | images/s | vs eager | setup s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in with_ratios(rows):
        if row["status"] != "ok":
            lines.append(
                f"| {row['net']} | {row['batch_size']} | {row['mode']} | "
                f"{row['status']}: {row['reason']} | | | |"
            )
            continue
        ratio = "-" if row["vs_eager"] is None else f"{row['vs_eager']:.2f}x"
        mode = row["mode"]
        if mode != "eager" and not row["compiled"]:
            mode += " (fell back to eager)"
        lines.append(
            f"| {row['net']} | {row['batch_size']} | {mode} | {row['ms_per_step']:.1f} "
            f"| {row['images_per_s']:,.0f} | {ratio} | {row['setup_s']:.1f} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(SPEEDRUNS), choices=list(SPEEDRUNS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (setup)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per measurement")
    parser.add_argument("--out", default=None, metavar="FILE.json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.one:
        net, batch_size, mode = json.loads(args.one)
        print(json.dumps(measure_one(net, batch_size, mode, args)))
        return 0
    result = {**environment(), "steps": args.steps, "warmup": args.warmup, "rows": []}
    for net in args.nets:
        for batch_size in args.batch_sizes:
            for mode in args.modes:
                row = measure(net, batch_size, mode, args)
                result["rows"].append(row)
                print(f"  {net} batch {batch_size} {mode}: {row['status']}", file=sys.stderr)
                if args.out:
                    write_json_atomic(args.out, {**result, "rows": with_ratios(result["rows"])})
    print(table(result["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
