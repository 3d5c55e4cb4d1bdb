"""The one place files are read and written: written whole or not at all, new outputs never
over an existing file, only regular files read (a FIFO or device never blocks a reader), JSON
numbers range-checked; whether a recorded process lives, and a cap on this process's memory.

Every module reads through `read_regular_bytes`, `read_regular_text` and `read_json` (or
`parse_json` for text it already holds) and writes through `write_atomic` or `write_new`;
`tests/test_chokepoints.py` fails if one opens a file another way.
"""

from __future__ import annotations

import errno
import json
import math
import os
import resource
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

# No file this app reads comes near this (the largest are a few MB of metrics or weights
# mapped by torch, which reads through `open_regular`); a bigger one is refused unread.
MAX_READ_BYTES = 512 * 2**20
# JSON numbers beyond these are refused: no count, time or loss this app records is larger,
# and a 400-digit integer would overflow every float conversion downstream.
MAX_JSON_DIGITS = 18


class NotARegularFile(OSError):
    """The path names a FIFO, socket, device or folder: never opened for reading."""


def open_regular(path: str | os.PathLike, limit: int = MAX_READ_BYTES) -> BinaryIO:
    """`path` opened for binary reading if it is a regular file (symlinks followed) of at
    most `limit` bytes; OSError otherwise. The open does not block: a FIFO is refused, not
    waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit // 2**20} MB", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(path: str | os.PathLike, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file (see `open_regular`)."""
    with open_regular(path, limit) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:  # it grew after the check
        raise OSError(errno.EFBIG, f"larger than {limit // 2**20} MB", str(path))
    return data


def read_regular_text(path: str | os.PathLike, limit: int = MAX_READ_BYTES) -> str:
    """The UTF-8 text of a regular file; undecodable bytes become U+FFFD."""
    return read_regular_bytes(path, limit).decode("utf-8", errors="replace")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise ValueError(f"number {text[:8]}... has more than {MAX_JSON_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:12]} is out of range")
    return value


def parse_json(text: str | bytes) -> Any:
    """json.loads with every number range-checked (ValueError past `MAX_JSON_DIGITS` digits
    or beyond a float's range); NaN and Infinity, which a diverged run records, stay."""
    try:
        return json.loads(text, parse_int=_bounded_int, parse_float=_finite_float)
    except RecursionError:  # "[[[[...": nested deeper than the parser's stack
        raise ValueError("JSON nested too deep") from None


def read_json(path: str | os.PathLike) -> Any:
    """Parsed JSON of `path`, or None if it is missing, not a regular file or unreadable."""
    try:
        return parse_json(read_regular_text(path))
    except (OSError, ValueError):
        return None


def _temp_beside(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def _write_temp(handle: int, temp: str, write: Callable[[BinaryIO], None]) -> None:
    with os.fdopen(handle, "wb") as stream:
        write(stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.chmod(temp, 0o644)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(stream)` on a temp file beside `path`, then rename it into place.

    Readers see the old file or the new one, never half of one; the temp file is removed if
    anything fails. The file is made world-readable (mkstemp makes it private).
    """
    path = Path(path)
    handle, temp = _temp_beside(path)
    try:
        _write_temp(handle, temp, write)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_new(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """`write_atomic` for a file that must not exist yet: FileExistsError, and the existing
    file untouched, if it does, even when another process creates it meanwhile (the temp
    file is hard-linked into place, which never replaces)."""
    path = Path(path)
    handle, temp = _temp_beside(path)
    try:
        _write_temp(handle, temp, write)
        try:
            os.link(temp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: claim the name, then replace
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


# Files a run folder holds (`resnet_core.training.runs`): an output never goes among them.
RUN_MARKERS = ("status.json", "spec.json", "metrics.jsonl")


class OutputRefused(ValueError):
    """An output path that would replace a file or land in a run folder; one line."""


def check_output(path: str | os.PathLike) -> Path:
    """`path` if a new output may be written there, before any work is done; OutputRefused
    if something exists at `path` (a file, folder, link or FIFO), its folder is missing or
    not a folder, or its folder belongs to a run (it holds a run's files)."""
    path = Path(path)
    if os.path.lexists(path):
        raise OutputRefused(f"{path}: already exists; choose a new file name (nothing replaced)")
    folder = path.parent
    if not folder.is_dir():
        raise OutputRefused(f"{folder}: no such folder; create it first or choose another")
    if any((folder / name).exists() for name in RUN_MARKERS):
        raise OutputRefused(
            f"{folder}: is a run folder; write outputs elsewhere (a run holds only its own files)"
        )
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `write_atomic`)."""
    write_atomic(path, lambda stream: stream.write(data))


def json_bytes(data: Any) -> bytes:
    """JSON as this app writes it: indented, with a final newline."""
    return (json.dumps(data, indent=2) + "\n").encode()


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to `path` atomically (see `write_atomic`)."""
    write_bytes_atomic(path, json_bytes(data))


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
        return False  # no process has such an id (os.kill would overflow on it)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def limit_address_space(extra_bytes: int) -> None:
    """Cap this process's address space at what it uses now plus `extra_bytes`, so that an
    allocation past it fails with MemoryError (Linux, through /proc; elsewhere nothing)."""
    try:
        pages = int(read_regular_text("/proc/self/statm").split()[0])
    except (OSError, ValueError, IndexError):
        return
    limit = pages * os.sysconf("SC_PAGE_SIZE") + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
