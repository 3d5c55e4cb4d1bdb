"""Shared fixtures.

`cifar_root` gives tests the real CIFAR-10 image-folder tree without depending on any
machine's data folder: it unpacks the read-only tarball `<repo>/../shared/datasets/
cifar10-jpeg.tar.gz` (or `<repo>/.device/cifar10-jpeg.tar.gz` on a rented GPU box) once
into `<repo>/.data/cifar10/` (git-ignored, reused across runs). $RESNET_EXPLORER_DATA, if
set, is used instead.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARBALLS = (
    REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz",
    REPO / ".device" / "cifar10-jpeg.tar.gz",
)
UNPACKED = REPO / ".data" / "cifar10"
MARKER = ".unpacked"


def _unpack(tarball: Path, target: Path) -> None:
    """Extract into a temp folder beside target, then rename it into place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".cifar10-"))
    try:
        with tarfile.open(tarball) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(staging, filter="data")
            else:  # Python < 3.10.12: the archive is our own read-only copy
                archive.extractall(staging)  # noqa: S202
        (staging / MARKER).write_text(str(tarball))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """Folder holding CIFAR-10 as train/<class>/*.jpg and test/<class>/*.jpg."""
    env = os.environ.get("RESNET_EXPLORER_DATA")
    if env:
        return Path(env)
    if (UNPACKED / MARKER).is_file():
        return UNPACKED
    tarball = next((path for path in TARBALLS if path.is_file()), None)
    if tarball is None:
        pytest.skip(
            "CIFAR-10 tarball not found at ../shared/datasets/cifar10-jpeg.tar.gz; "
            "set RESNET_EXPLORER_DATA to a CIFAR-10 folder to run this test"
        )
    _unpack(tarball, UNPACKED)
    return UNPACKED


# The Lecture page warms its probe in a daemon thread. Left running when the test process
# exits, its torch work is torn down under it and the process aborts ("terminate called
# without an active exception"), failing a run whose tests all passed.
BACKGROUND_WORK = ("lecture-warm",)


def _join_background_work() -> None:
    for thread in threading.enumerate():
        if thread.name in BACKGROUND_WORK:
            thread.join(timeout=300)


@pytest.fixture(autouse=True)
def _no_background_work_between_tests():
    """A page's warm-up thread (the Lecture's builds nets, drawing from torch's global random
    generator) ends before the next test starts, so a test that seeds that generator is not
    interleaved with it."""
    yield
    _join_background_work()


def pytest_sessionfinish(session, exitstatus):
    _join_background_work()
