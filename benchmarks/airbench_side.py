"""airbench94 (Keller Jordan, https://github.com/KellerJordan/cifar10-airbench) trained on our
CIFAR-10 copy, as a yardstick for the speedruns.

airbench94 reaches 94.01 % (mean of 1,000 runs) on the original binary CIFAR-10. Trained on
the JPEG copy these machines hold, the points it falls short measure what the copy costs, so
the speedrun targets move down by as much (`benchmarks/speedrun.py --airbench SRC`).

airbench is a benchmark-only dependency (`benchmarks/requirements-bench.txt`): resnet_core
never imports it. It runs in a subprocess with the sdist's source on PYTHONPATH, because its
loaders read `cifar10/train.pt` relative to the working folder and it only runs on CUDA.

Seconds per run, two measures, both recorded:
- `seconds`: airbench's own time, the last column of the final row of the table it prints
  (CUDA events around the whitening init, the training epochs and the final TTA evaluation;
  its per-epoch evaluations are excluded), as its published timings are measured;
- `wall_seconds`: wall time of `train94()` between two `torch.cuda.synchronize()` calls,
  per-epoch evaluations included.
Accuracy: `airbench.evaluate(model, test_loader, tta_level=2)` on the returned model.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "AIRBENCH_VERSION",
    "MARKER",
    "PUBLISHED_ACCURACY",
    "airbench_source",
    "run_airbench",
    "write_airbench_data",
]

AIRBENCH_VERSION = "0.1.8"
PUBLISHED_ACCURACY = 0.940  # airbench94's published 94 % (94.01 %, mean of 1,000 runs)
MARKER = "resnet-explorer benchmarks/airbench_side.py"  # the `written_by` key of our files
SPLITS = ("train", "test")
RESULT_PREFIX = "AIRBENCH_RESULT "
SECONDS_MEASURE = (
    "airbench's own CUDA-event time (whitening init + training epochs + final TTA eval, "
    "per-epoch evals excluded), from the final row of its printed table"
)


class ForeignFiles(FileExistsError):
    """The target folder holds train.pt/test.pt that this module did not write."""


def _ours(path: Path) -> bool:
    """Whether `path` is a tensor file written by `write_airbench_data`."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
    return isinstance(stored, dict) and stored.get("written_by") == MARKER


def _split(data: Any, split: str) -> dict[str, Any]:
    """One split in airbench's layout: images uint8 (N, 32, 32, 3), labels int64 (N,)."""
    images = getattr(data, f"{split}_images")  # (N, 3, 32, 32)
    labels = getattr(data, f"{split}_labels")
    return {
        "images": images.to(torch.uint8).permute(0, 2, 3, 1).contiguous(),  # (N, 32, 32, 3)
        "labels": labels.to(torch.int64).contiguous(),
        "classes": [str(name) for name in data.classes],
        "written_by": MARKER,
    }


def write_airbench_data(data: Any, folder: str | os.PathLike) -> Path:
    """Write `data` (a Cifar10) as `folder/train.pt` and `folder/test.pt` for airbench.

    Each file is written to a temp file beside it and renamed into place. Files already
    there are replaced only if this function wrote them (their `written_by` key).

    Raises:
        ForeignFiles: train.pt or test.pt exists and was not written here.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / f"{split}.pt" for split in SPLITS]
    foreign = [path.name for path in targets if path.exists() and not _ours(path)]
    if foreign:
        raise ForeignFiles(f"{folder}: refusing to overwrite {', '.join(foreign)} (not ours)")
    for split, target in zip(SPLITS, targets):
        handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        os.close(handle)
        try:
            torch.save(_split(data, split), temp)
            os.replace(temp, target)
        finally:
            Path(temp).unlink(missing_ok=True)
    return folder


def airbench_source(sdist_or_src: str | os.PathLike, scratch: str | os.PathLike) -> Path:
    """The folder to put on PYTHONPATH so that `import airbench` works: an sdist
    (.tar.gz) is extracted into `scratch`; a source tree is searched as it is."""
    path = Path(sdist_or_src)
    if path.is_file():
        _extract(path, Path(scratch))
        path = Path(scratch)
    for init in sorted(path.glob("**/airbench/__init__.py"), key=lambda p: len(p.parts)):
        return init.parent.parent
    if (path / "__init__.py").is_file() and path.name == "airbench":
        return path.parent
    raise FileNotFoundError(f"{sdist_or_src}: no airbench package inside")


def final_row(table: str) -> tuple[float | None, float | None]:
    """(seconds, TTA accuracy) from the final row of the table airbench's train() prints:
    `|  run  |  eval  |  loss  |  acc  |  val  |  tta_val  |  total_time_seconds  |`."""
    for line in reversed(table.splitlines()):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] == "eval":
            return float(cells[-1]), float(cells[-2])
    return None, None


def _extract(sdist: Path, scratch: Path) -> None:
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(scratch, filter="data")
        else:  # Python < 3.10.12: the sdist is a pinned, known file
            archive.extractall(scratch)  # noqa: S202


_SCRIPT = r"""
import contextlib, io, json, sys, time
import torch
import airbench

FINAL_ROW

test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
with contextlib.redirect_stdout(io.StringIO()):
    airbench.warmup94()
for seed in json.loads(sys.argv[1]):
    torch.manual_seed(seed)
    table = io.StringIO()
    torch.cuda.synchronize()
    started = time.perf_counter()
    with contextlib.redirect_stdout(table):
        model = airbench.train94()
    torch.cuda.synchronize()
    wall = time.perf_counter() - started
    print(table.getvalue(), flush=True)
    seconds, printed = final_row(table.getvalue())
    accuracy = airbench.evaluate(model, test_loader, tta_level=2)
    row = dict(seed=seed, accuracy=accuracy, seconds=seconds, wall_seconds=round(wall, 3),
               printed_tta_accuracy=printed)
    print("%s%s" % (RESULT_PREFIX, json.dumps(row)), flush=True)
"""


def _script() -> str:
    return _SCRIPT.replace("FINAL_ROW", inspect.getsource(final_row)).replace(
        "RESULT_PREFIX", repr(RESULT_PREFIX)
    )


def _rows(stdout: str) -> list[dict]:
    return [
        json.loads(line[len(RESULT_PREFIX) :])
        for line in stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]


def _result(status: str, reason: str = "", runs: list | None = None, log: str = "") -> dict:
    return {
        "status": status,
        "reason": reason,
        "version": AIRBENCH_VERSION,
        "published_accuracy": PUBLISHED_ACCURACY,
        "seconds_measure": SECONDS_MEASURE,
        "runs": runs or [],
        "log_tail": log[-4000:],
    }


def run_airbench(
    folder: str | os.PathLike,
    seeds: list[int],
    sdist_or_src: str | os.PathLike,
    timeout: float,
) -> dict:
    """Train airbench94 once per seed on `folder/{train,test}.pt` (see `write_airbench_data`)
    in a CUDA subprocess, after one untimed warm-up run.

    Returns a dict: status "ok", "partial" (timed out or failed after some seeds), "failed"
    or "skipped" (no CUDA here), reason, and runs [{seed, accuracy, seconds, wall_seconds}].
    """
    if not torch.cuda.is_available():
        return _result("skipped", "no CUDA")
    folder = Path(folder).resolve()
    missing = [f"{split}.pt" for split in SPLITS if not (folder / f"{split}.pt").is_file()]
    if missing:
        return _result("failed", f"{folder}: missing {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="airbench-") as work:
        (Path(work) / "cifar10").symlink_to(folder, target_is_directory=True)
        try:
            source = airbench_source(sdist_or_src, Path(work) / "src")
        except (OSError, tarfile.TarError) as error:
            return _result("failed", f"airbench source: {error}")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")]),
        }
        command = [sys.executable, "-c", _script(), json.dumps(list(seeds))]
        try:
            done = subprocess.run(
                command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as expired:
            log = _text(expired.stdout) + _text(expired.stderr)
            runs = _rows(_text(expired.stdout))
            return _result(
                "partial" if runs else "failed", f"timed out after {timeout} s", runs, log
            )
    runs, log = _rows(done.stdout), done.stdout + done.stderr
    if done.returncode == 0:
        return _result("ok", "", runs, log)
    reason = f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}"
    return _result("partial" if runs else "failed", reason, runs, log)


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
