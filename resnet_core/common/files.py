"""Files written whole or not at all, JSON read back, and whether a recorded process lives."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(stream)` on a temp file beside `path`, then rename it into place.

    Readers see the old file or the new one, never half of one; the temp file is removed if
    anything fails. The file is made world-readable (mkstemp makes it private).
    """
    path = Path(path)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `write_atomic`)."""
    write_atomic(path, lambda stream: stream.write(data))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to `path` atomically (see `write_atomic`)."""
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    """Parsed JSON of `path`, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
