"""The one place saved tensors are loaded: `torch.load` with `weights_only=True`, of a regular
file only. A refusal is decided by the exception's type (the message of torch, which changes
between versions and advises loading unsafely, only ever supplies the name of a refused
object), and said in one line. `tests/test_chokepoints.py` fails if another module calls
`torch.load`.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from resnet_core.common.files import NotARegularFile, open_regular

__all__ = ["SavedFileError", "load_saved", "MAX_SAVED_BYTES"]

MAX_SAVED_BYTES = 4 * 2**30  # ResNet-152 with its optimizer state is under 1 GB

_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


class SavedFileError(ValueError):
    """A file of saved tensors that is not loaded. `kind` says why: "missing", "folder",
    "not_file" (FIFO, socket, device), "too_big", "objects" (a pickle of Python objects:
    `detail` names one when torch does), "foreign" (bytes that are no saved tensors) or
    "damaged" (truncated or corrupt)."""

    REASONS = {
        "missing": "no such file",
        "folder": "a folder, not a file",
        "not_file": "not a regular file (a FIFO, socket or device is never read)",
        "too_big": f"larger than {MAX_SAVED_BYTES // 2**30} GB",
        "objects": "holds Python objects, not only tensors, so it is never loaded",
        "foreign": "its bytes are not a saved set of tensors",
        "damaged": "cannot be read as saved tensors; it may be truncated or damaged",
    }

    def __init__(self, path: str | os.PathLike, kind: str, detail: str = "") -> None:
        self.path, self.kind, self.detail = Path(path), kind, detail
        super().__init__(f"{path}: {self.REASONS[kind]}")


def _open(path: Path) -> Any:
    try:
        return open_regular(path, MAX_SAVED_BYTES)
    except FileNotFoundError:
        raise SavedFileError(path, "missing") from None
    except IsADirectoryError:
        raise SavedFileError(path, "folder") from None
    except NotARegularFile:
        raise SavedFileError(path, "folder" if path.is_dir() else "not_file") from None
    except OSError as error:
        if error.errno == errno.EFBIG:
            raise SavedFileError(path, "too_big") from None
        raise


def load_saved(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """What `torch.save` wrote to `path`, loaded with `weights_only=True`.

    Raises:
        SavedFileError: the file is not loaded (its `kind` says why).
        OSError: the file exists but cannot be opened (permissions, I/O).
    """
    path = Path(path)
    with _open(path) as stream:
        try:
            return torch.load(stream, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            refused = _GLOBAL.search(str(error))
            if refused:
                raise SavedFileError(path, "objects", refused.group(1)) from None
            raise SavedFileError(path, "foreign") from None
        except Exception:  # noqa: BLE001 - any other failure: bytes torch cannot read
            raise SavedFileError(path, "damaged") from None
