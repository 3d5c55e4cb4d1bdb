"""How fast the interactive views answer on this machine: trace every preset, probe a pair.

Goals (2-core CPU): trace <= 0.5 s per preset, plain110 + resnet110 gradient probe pair
(batch 32) <= 3 s. Run: `python benchmarks/interactive.py` (prints a table).
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import timed  # noqa: E402

from resnet_core import build_model, gradient_norms, list_presets, trace_shapes  # noqa: E402
from resnet_core.nets.spec import PRESET_INFO  # noqa: E402

TRACE_GOAL_S = 0.5
PROBE_GOAL_S = 3.0


def best_of(fn, repeats: int = 3) -> float:
    """Fastest of a few runs after one warm-up: the time a warm app would see."""
    return min(timed(fn, repeats))


def main() -> None:
    torch.manual_seed(0)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}"
    )
    print(f"{'what':<40} {'seconds':>8} {'goal':>6}  ok")
    for name in list_presets():
        model = build_model(name)
        side = PRESET_INFO[name]["input_size"]
        seconds = best_of(lambda m=model, s=side: trace_shapes(m, (1, 3, s, s)))
        flag = "yes" if seconds <= TRACE_GOAL_S else "NO"
        print(
            f"{'trace ' + name + f' @{side}x{side}':<40} {seconds:8.3f} {TRACE_GOAL_S:6.1f}  {flag}"
        )
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 3, 32, 32, generator=generator)
    targets = torch.randint(0, 10, (32,), generator=generator)
    plain, residual = build_model("plain110"), build_model("resnet110")

    def probe_pair() -> None:
        gradient_norms(plain, inputs, targets)
        gradient_norms(residual, inputs, targets)

    seconds = best_of(probe_pair)
    flag = "yes" if seconds <= PROBE_GOAL_S else "NO"
    print(
        f"{'probe plain110 + resnet110, batch 32':<40} {seconds:8.3f} {PROBE_GOAL_S:6.1f}  {flag}"
    )


if __name__ == "__main__":
    main()
