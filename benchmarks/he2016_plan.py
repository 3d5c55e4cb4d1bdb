"""Which He et al. reproduction fits the device time: he2016 (batch 128, as in the paper) or
he2016_b512 (batch 512, the learning rate scaled linearly, same epochs).

Reads a 1-epoch timing run of he2016 (all nets at once, as the real run trains them):

    python -m resnet_core experiment he2016 --device cuda --epochs 1 --jobs 9 --out TIMING
    python benchmarks/he2016_plan.py TIMING/he2016 --cap 470

and prints one line: the experiment to run, then why. Each net's whole run is estimated as
its set-up (before the first epoch) plus the recipe's epochs times its first epoch (training
and evaluation; the first epoch is the slowest, so the estimate errs long). The slowest net
decides. benchmarks/device_run.sh runs what it prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from resnet_core.training.experiments import get_experiment  # noqa: E402
from resnet_core.training.runs import read_metrics  # noqa: E402

FULL, FALLBACK = "he2016", "he2016_b512"


def estimate(run_dir: Path, epochs: int) -> float | None:
    """Seconds a whole run of `epochs` would take, from the first epoch of `run_dir`."""
    first = next((e for e in read_metrics(run_dir) if e.get("event") == "epoch"), None)
    if first is None:
        return None
    epoch = float(first["seconds"]) + float(first.get("eval_seconds") or 0.0)
    setup = max(float(first["elapsed"]) - epoch, 0.0)
    return setup + epochs * epoch


def plan(timing: Path, cap: float) -> tuple[str, str]:
    """(experiment to run, the reason) for a cap of `cap` seconds."""
    epochs = int(get_experiment(FULL).gpu_recipe["epochs"])
    if not Path(timing).is_dir():
        return FALLBACK, f"no timing run in {Path(timing).name}"
    nets = sorted(path for path in Path(timing).iterdir() if path.is_dir())
    estimates = {net.name: estimate(net, epochs) for net in nets}
    missing = sorted(name for name, seconds in estimates.items() if seconds is None)
    if not nets or missing:
        return FALLBACK, f"the timing run finished no epoch of {', '.join(missing) or 'any net'}"
    slowest = max(estimates, key=estimates.get)
    seconds = estimates[slowest]
    verdict = f"{FULL} would take about {seconds:.0f} s ({slowest} the slowest, {epochs} epochs)"
    if seconds <= cap:
        return FULL, f"{verdict}, within the {cap:.0f} s cap"
    return FALLBACK, f"{verdict}, over the {cap:.0f} s cap"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timing", type=Path, help="the timing run's he2016 folder")
    parser.add_argument("--cap", type=float, required=True, help="seconds the run may take")
    args = parser.parse_args(argv)
    name, reason = plan(args.timing, args.cap)
    print(f"{name} {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
