"""A run's metrics as TensorBoard event files, to view with `tensorboard --logdir DIR`.

Every scalar in `metrics.jsonl` becomes a TensorBoard series, at the training step it was
logged (so per-epoch test results line up with the per-step training loss):

- `train/loss`, `train/batch_accuracy`, `train/lr`: each logged step;
- `epoch/train_loss`, `epoch/train_accuracy`, `epoch/test_loss`, `epoch/test_accuracy`,
  `epoch/best_test_accuracy`: at the last step of each epoch;
- `grad_norm/<layer>`, `weight_norm/<layer>`: where the run logged gradient norms.

Values that were not recorded (None) or are not finite are left out. The files are written
with tensorboardX into a temporary folder beside DIR, which is renamed into place once whole.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from resnet_core.common.files import RUN_MARKERS
from resnet_core.training import events, runs

__all__ = ["ExportFolderError", "run_scalars", "export_tensorboard"]

# EpochEnd field -> TensorBoard tag
_EPOCH_TAGS = {
    "train_loss": "epoch/train_loss",
    "train_acc": "epoch/train_accuracy",
    "test_loss": "epoch/test_loss",
    "test_acc": "epoch/test_accuracy",
    "best_test_acc": "epoch/best_test_accuracy",
}
# Step field -> TensorBoard tag
_STEP_TAGS = {"loss": "train/loss", "accuracy": "train/batch_accuracy", "lr": "train/lr"}


class ExportFolderError(ValueError):
    """The export cannot be written where it was asked to (the message says why)."""


def _event_scalars(event: events.Event) -> Iterator[tuple[str, int, object]]:
    """(tag, step, value) of one typed event, values unchecked."""
    if isinstance(event, events.Step):
        for name, tag in _STEP_TAGS.items():
            yield tag, event.step, getattr(event, name)
    elif isinstance(event, events.EpochEnd):
        step = event.step or event.epoch  # runs logged before epochs carried their step
        for name, tag in _EPOCH_TAGS.items():
            yield tag, step, getattr(event, name)
    elif isinstance(event, events.GradNorms):
        for row in event.rows:
            if isinstance(row, dict) and isinstance(row.get("layer"), str):
                yield f"grad_norm/{row['layer']}", event.step, row.get("grad_norm")
                yield f"weight_norm/{row['layer']}", event.step, row.get("weight_norm")


def run_scalars(run_dir: str | os.PathLike) -> list[tuple[str, int, float, float | None]]:
    """Every scalar a run logged, in file order: (tag, step, value, wall time or None)."""
    scalars = []
    for record in runs.read_metrics(run_dir):
        event = events.parse_event(record)
        if event is None:
            continue
        wall = record.get("time")
        wall = (
            float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) else None
        )
        for tag, step, value in _event_scalars(event):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                scalars.append((tag, int(step), float(value), wall))
    return scalars


def _check_target(out_dir: Path) -> None:
    """Refuse a file, or a folder that already holds something: nothing is overwritten."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportFolderError(
            f"{out_dir}: is a file; choose a new folder for the TensorBoard files"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ExportFolderError(f"{out_dir}: already holds files; choose a new or empty folder")
    if any((out_dir.parent / name).exists() for name in RUN_MARKERS):
        raise ExportFolderError(
            f"{out_dir.parent}: is a run folder; write the TensorBoard files elsewhere"
        )


def export_tensorboard(
    run: str | os.PathLike, out_dir: str | os.PathLike, root: str | os.PathLike | None = None
) -> int:
    """Write a run's scalars as TensorBoard event files into `out_dir`.

    Args:
        run: a run folder (or run id, see `runs.resolve_run`).
        out_dir: a folder that does not exist yet or is empty.
        root: the runs folder a run id is looked up in (default `runs.default_root()`).

    Returns:
        How many scalar values were written.

    Raises:
        runs.RunError: not a run folder, or one with no metrics.
        ExportFolderError: `out_dir` is a file or a folder that is not empty.
    """
    from tensorboardX import SummaryWriter  # imported here: only this export needs it

    run_dir = runs.resolve_run(run, root)
    scalars = run_scalars(run_dir)
    if not scalars:
        raise runs.RunError(f"{run_dir / 'metrics.jsonl'}: no metrics logged; nothing to export")
    out_dir = Path(out_dir)
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        writer = SummaryWriter(logdir=str(temp))
        for tag, step, value, wall in scalars:
            writer.add_scalar(tag, value, step, walltime=wall)
        writer.close()
        temp.chmod(0o755)  # mkdtemp makes it private
        _check_target(out_dir)  # still free: an empty folder is replaced, none is made
        os.replace(temp, out_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return len(scalars)
