"""Run folders made fit to ship with the app: fp16 model weights only, or none.

An experiment's runs are slimmed as they finish (`resnet_core.training.experiment_runner`),
so that the shipped results (checkpoints/demo) stay small enough for the repository and the
package: only small nets keep weights, and only the ones they are evaluated with.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from resnet_core.common.files import write_bytes_atomic
from resnet_core.training.runs import load_checkpoint

__all__ = ["MAX_SHIPPED_PARAMS", "slim_checkpoint", "slim_run"]

MAX_SHIPPED_PARAMS = 2_000_000  # ship weights of CIFAR ResNet-20..110-sized nets only


def slim_run(run_dir: Path, keep_weights: bool = True) -> None:
    """Make a run fit to ship: model weights only (fp16) in best.pt, no last.pt; big nets
    (or every net, when not `keep_weights`) none."""
    last = run_dir / "last.pt"
    best = run_dir / "best.pt"
    if last.exists():
        last.unlink()
    if best.exists():
        if not keep_weights or not slim_checkpoint(best, MAX_SHIPPED_PARAMS):
            best.unlink()


def slim_checkpoint(path: Path, max_params: int) -> bool:
    """Rewrite a checkpoint with fp16 weights, no optimizer state and, for an EMA run, only
    the averaged weights it is evaluated with; False if too big to ship."""
    checkpoint = load_checkpoint(path)
    weights = checkpoint["model"]
    if sum(t.numel() for t in weights.values() if t.is_floating_point()) > max_params:
        return False
    checkpoint["model"] = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    for training_state in ("optimizer", "scaler", "live_model"):
        checkpoint.pop(training_state, None)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return True
