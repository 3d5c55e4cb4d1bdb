"""Run directories: everything a training run leaves behind, readable while it runs.

Layout of `<root>/<run_id>/` (root: argument, else `$RESNET_EXPLORER_CHECKPOINTS/runs`, else
`checkpoints/runs` under the current directory; the checkpoints folder also holds the
app's job queue, see `resnet_core.training.jobs`)::

    spec.json      the ArchSpec (model.spec.to_dict())
    config.json    the TrainConfig (TrainConfig.to_dict())
    metrics.jsonl  one JSON object per event ("event" key), flushed as written
    status.json    {"state": running|done|failed|cancelled, pid, started, updated, ...}
    last.pt        model + optimizer state after the last finished epoch
    best.pt        the same, for the epoch with the best test accuracy

A viewer polls status.json and metrics.jsonl. Every file but metrics.jsonl is replaced
atomically (temp file + os.replace), so a reader never sees half a file and a killed run
leaves the previous checkpoint intact. Checkpoints load with weights_only=True.

`resnet_core.training.recording.RunWriter` writes these folders; this module claims, lists,
reads and deletes them.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_core.common.env import CHECKPOINTS_ENV, runs_root
from resnet_core.common.errors import first_line
from resnet_core.common.files import (
    parse_json,
    pid_alive,
    read_json,
    read_regular_text,
    write_json_atomic,
)
from resnet_core.common.text import plain_label
from resnet_core.common.weights import SavedFileError, load_saved
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec, SpecError, spec_label
from resnet_core.training import events
from resnet_core.training.data import normalization

__all__ = [
    "CHECKPOINTS_ENV",
    "RunError",
    "RunInfo",
    "default_root",
    "validate_run_id",
    "resolve_run",
    "new_run_dir",
    "list_runs",
    "run_info",
    "load_run",
    "load_checkpoint",
    "delete_run",
    "read_metrics",
    "read_events",
    "RUN_FILES",
    "is_run_folder",
    "claim_run_dir",
    "RunLock",
    "read_status",
    "write_json_atomic",
]

CHECKPOINT_FORMAT = "resnet_explorer.checkpoint"
# Ranges of status.json's numbers: a value outside is shown as unknown, never formatted.
MAX_SECONDS = 10 * 365 * 24 * 3600.0
MAX_EPOCHS = 100_000
CHECKPOINT_VERSION = 1
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(ValueError):
    """A run or one of its files cannot be used; the message names the file and the fix."""


# What a run folder holds: the files RunWriter (`recording`) writes (and the temp files of their
# atomic writes). Only a folder holding nothing else is a run this app may delete.
RUN_FILES = ("spec.json", "config.json", "metrics.jsonl", "status.json", "last.pt", "best.pt")
_TEMP_FILE = re.compile(r"^\.(" + "|".join(re.escape(n) for n in RUN_FILES) + r")\..+\.tmp$")


def _foreign_entries(path: Path) -> list[str]:
    """Names in `path` that a run does not write."""
    return sorted(
        entry.name
        for entry in path.iterdir()
        if not (entry.is_file() and (entry.name in RUN_FILES or _TEMP_FILE.match(entry.name)))
    )


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder this app wrote as a run: a status.json object and nothing
    but run files."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    return isinstance(read_json(path / "status.json"), dict) and not _foreign_entries(path)


def claim_run_dir(path: str | os.PathLike, resume: bool = False) -> Path:
    """Check that a run may be recorded in `path` before anything is written there.

    A new run needs a folder that does not exist yet or is empty; continuing a run
    (`resume`) needs a run folder. Never reuses a folder silently: RunError otherwise.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path}: is a file, not a folder; choose a folder for the run")
    if resume:
        if not is_run_folder(path):
            raise RunError(f"{path}: not a run folder; only a run can be resumed there")
        return path
    if path.is_dir() and any(path.iterdir()):
        raise RunError(
            f"{path}: already holds files; choose a new folder (or resume the run that is there)"
        )
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK)):
        raise RunError(f"{parent}: cannot create the run folder there (not a writable folder)")
    return path


class RunLock:
    """An exclusive lock (flock) on a run folder, held while one process records the run.

    Taken atomically, not checked and then taken: of two processes recording into one
    folder at once (two `train --run-dir SAME`, a `--resume` of a run that is running), the
    second is refused. The kernel drops the lock when its holder exits, however it exits.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        self.fd: int | None = os.open(self.path, flags)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.release()
            raise RunError(
                f"{self.path}: another process is recording a run here right now; wait for "
                "it to end (or cancel it), or choose another folder"
            ) from None

    def release(self) -> None:
        """Let another process record here (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.release()


@dataclass(frozen=True)
class RunInfo:
    """One run, as a table row.

    Attributes:
        id: folder name under the runs root.
        path: the run folder.
        model: model label (preset name or custom description).
        state: running | done | failed | cancelled | interrupted (status said running but
            its process is gone) | unknown (status.json missing or unreadable).
        best_test_acc: best test accuracy so far (fraction) or None.
        final_test_acc: test accuracy after the last evaluated epoch, or None.
        seconds: elapsed time of the run.
        device: where it ran, e.g. "cpu (2 threads)".
        started: ISO-8601 start time.
        synthetic: trained on the synthetic stand-in dataset.
        epoch: epochs finished.
        epochs: epochs planned.
        message: the last message (error, cancel reason), or "".
    """

    id: str
    path: str
    model: str
    state: str
    best_test_acc: float | None
    final_test_acc: float | None
    seconds: float | None
    device: str
    started: str
    synthetic: bool
    epoch: int
    epochs: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Paths -------------------------------------------------------------------------------------
def default_root() -> Path:
    """The runs folder: $RESNET_EXPLORER_CHECKPOINTS/runs, else ./checkpoints/runs."""
    return runs_root()


def validate_run_id(run_id: str) -> str:
    """Return run_id if it is a safe folder name, else raise RunError."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise RunError(
            f"run id {run_id!r} is not valid; use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, no '..')"
        )
    return run_id


def resolve_run(run: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A run folder from a path to it, or from a run id under root."""
    path = Path(run)
    if path.is_dir() and ((path / "status.json").exists() or (path / "config.json").exists()):
        return path
    if path.is_dir():
        raise RunError(f"{path}: not a run folder (no status.json or config.json)")
    if os.sep in str(run) or str(run).startswith("."):
        raise RunError(f"{path}: no such run folder; 'python -m resnet_core runs' lists the runs")
    base = Path(root) if root is not None else default_root()
    candidate = base / validate_run_id(str(run))
    if not candidate.resolve().is_relative_to(base.resolve()):
        raise RunError(f"run id {run!r} points outside {base}")
    if not candidate.is_dir():
        raise RunError(f"no run {str(run)!r} in {base}; 'python -m resnet_core runs' lists them")
    return candidate


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:40] or "run"


def new_run_dir(label: str = "run", root: str | os.PathLike | None = None) -> Path:
    """Create and return a fresh `<root>/<YYYYmmdd-HHMMSS>-<label>[-n]` folder."""
    base = Path(root) if root is not None else default_root()
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        suffix = f"-{attempt}" if attempt else ""
        path = base / validate_run_id(f"{stamp}-{_slug(label)}{suffix}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"{base}: could not create a new run folder; remove old runs")


# Reading runs ------------------------------------------------------------------------------
def read_status(run_dir: str | os.PathLike) -> dict:
    """status.json as a dict; raises RunError naming the file if it is missing or broken."""
    path = Path(run_dir) / "status.json"
    data = read_json(path)
    if not isinstance(data, dict):
        raise RunError(f"{path}: missing or not a JSON object; is this a run folder?")
    return data


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """Events from metrics.jsonl; a partly written (or otherwise broken) line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        text = read_regular_text(path)
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            record = parse_json(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(record)
    return events


def read_events(run_dir: str | os.PathLike) -> list[events.Event]:
    """The typed events of metrics.jsonl; records that are not valid events are skipped."""
    parsed = (events.parse_event(record) for record in read_metrics(run_dir))
    return [event for event in parsed if event is not None]


def run_info(run_dir: str | os.PathLike) -> RunInfo:
    """A RunInfo for one folder; never raises for broken files (state "unknown")."""
    path = Path(run_dir)
    status = read_json(path / "status.json")
    if not isinstance(status, dict):  # shown as "unreadable", and can still be deleted
        status = {"state": "unreadable", "message": "status.json is missing or not a JSON object"}
    state = plain_label(status.get("state", "unknown"))
    if state == "running" and status.get("host") in (None, socket.gethostname()):
        if not pid_alive(status.get("pid")):
            state = "interrupted"
    model = status.get("model")
    if not model:
        spec = read_json(path / "spec.json")
        try:
            model = spec_label(ArchSpec.from_dict(spec))
        except (SpecError, TypeError):
            model = "?"

    def number(key: str, high: float) -> float | None:
        """The field if it is a number in [0, high], else None (shown as unknown)."""
        value = status.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if 0 <= value <= high else None  # NaN fails both

    return RunInfo(
        id=path.name,
        path=str(path),
        model=plain_label(model),  # a name from a file reaches sentences: nothing to render
        state=state,
        best_test_acc=number("best_test_acc", 1),
        final_test_acc=number("final_test_acc", 1),
        seconds=number("seconds", MAX_SECONDS),
        device=str(status.get("device", "")),
        started=str(status.get("started", "")),
        synthetic=bool(status.get("synthetic", False)),
        epoch=int(number("epoch", MAX_EPOCHS) or 0),
        epochs=int(number("epochs", MAX_EPOCHS) or 0),
        message=str(status.get("message", "")),
    )


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    """All runs under root, newest first."""
    base = Path(root) if root is not None else default_root()
    if not base.is_dir():
        return []
    infos = []
    for entry in os.scandir(base):
        if not entry.is_dir() or not _RUN_ID.match(entry.name):
            continue
        path = Path(entry.path)
        if (path / "status.json").exists() or (path / "config.json").exists():
            infos.append(run_info(path))
    return sorted(infos, key=lambda info: (info.started, info.id), reverse=True)


def delete_run(run_id: str, root: str | os.PathLike | None = None) -> None:
    """Delete a run folder: its run files, then the folder itself.

    Refuses ids that escape root, folders that are not runs (or hold files a run does not
    write: nothing is deleted then), and runs still in progress.
    """
    base = Path(root) if root is not None else default_root()
    path = base / validate_run_id(run_id)
    if not path.resolve().is_relative_to(base.resolve()) or path.is_symlink():
        raise RunError(f"run id {run_id!r} points outside {base}")
    if not path.is_dir():
        raise RunError(f"no run {run_id!r} in {base}")
    foreign = _foreign_entries(path)
    if foreign or not (path / "status.json").is_file():
        why = f"it also holds {', '.join(foreign[:3])}" if foreign else "it has no status.json"
        raise RunError(f"{path}: not deleted, {why}; only run folders this app wrote are deleted")
    if run_info(path).state == "running":
        raise RunError(f"run {run_id!r} is still running; cancel it before deleting")
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()


def run_normalization(run_dir: str | os.PathLike) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) a run's images were normalised with in training (its config.json)."""
    config = read_json(Path(run_dir) / "config.json")
    return normalization(config.get("normalize") if isinstance(config, dict) else None)


_REFUSALS = {
    "objects": "not a checkpoint this app wrote (it holds Python objects, not just tensors, "
    "and is never loaded)",
    "foreign": "not a checkpoint this app wrote (its bytes are not a saved set of tensors)",
    "damaged": "not a readable checkpoint (its bytes cannot be read as saved tensors); it may "
    "be truncated",
    "not_file": "not a regular file (a FIFO, socket or device is never read)",
    "too_big": "too large to be a checkpoint of a net this app builds",
}


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint with weights_only=True (`resnet_core.common.weights`) and check its
    record; any problem is a one-line RunError."""
    path = Path(path)
    try:
        data = load_saved(path, map_location)
    except SavedFileError as error:
        if error.kind in ("missing", "folder"):
            raise RunError(
                f"{path}: no such checkpoint; the run may not have finished an epoch yet"
            ) from None
        raise RunError(
            f"{path}: {_REFUSALS[error.kind]}; delete it or use the other checkpoint"
        ) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise RunError(
            f"{path}: not a ResNet Explorer checkpoint (no '{CHECKPOINT_FORMAT}' marker)"
        )
    if not isinstance(data.get("model"), dict) or not isinstance(data.get("epoch"), int):
        raise RunError(f"{path}: checkpoint lacks model weights or epoch; it is damaged")
    for key in ("config", "spec", "optimizer"):
        if not isinstance(data.get(key, {}), dict):
            raise RunError(f"{path}: checkpoint's {key} is not a record; it is damaged")
    return data


def load_run(
    path: str | os.PathLike,
    which: str = "best",
    device: str | torch.device = "cpu",
    root: str | os.PathLike | None = None,
) -> tuple[nn.Module, RunInfo]:
    """Rebuild a run's model from spec.json and best.pt or last.pt.

    Args:
        path: a run folder, or a run id under root.
        which: "best" or "last".
        device: where to put the model.
        root: runs root for ids (default `default_root()`).

    Returns:
        (model in eval mode, RunInfo).

    Raises:
        RunError: missing, truncated or foreign files (one line naming the file).
    """
    if which not in ("best", "last"):
        raise RunError(f"which: {which!r} is not allowed; choose best or last")
    run_dir = resolve_run(path, root)
    spec_path = run_dir / "spec.json"
    spec_data = read_json(spec_path)
    try:
        spec = ArchSpec.from_dict(spec_data)
    except (SpecError, TypeError) as error:
        raise RunError(
            f"{spec_path}: not a valid spec ({first_line(error, telling=True)})"
        ) from None
    checkpoint = load_checkpoint(run_dir / f"{which}.pt")
    try:
        model = build_model(spec)  # refused, before a weight is allocated, if far too big
    except SpecError as error:
        raise RunError(f"{spec_path}: {first_line(error)}") from None
    if checkpoint.get("config", {}).get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        raise RunError(
            f"{run_dir / (which + '.pt')}: weights do not fit spec.json ({first_line(error, telling=True)})"
        ) from None
    return model.to(device).eval(), run_info(run_dir)
