"""Running a student's file: in a process of its own, from an empty working folder, with a
wall-time, a CPU-time and a memory limit, its output cut short. The app's own process and
files are never touched by the student's code; what comes back is the report, as JSON.

These limits stop an endless loop, a huge allocation or a flood of output from hurting the
machine a check runs on. They are not a security boundary: the student's code runs as the
same user and could read or write that user's files. Run checks for people you do not trust
only where that does not matter (the app runs student code only when told to).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import runpy
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from resnet_core.common.errors import is_out_of_memory
from resnet_core.common.files import (
    limit_address_space,
    parse_json,
    read_regular_text,
    write_new,
)
from resnet_core.exercises.catalog import get_exercise

__all__ = [
    "Limits",
    "Verdict",
    "judge_file",
    "judge_source",
    "may_run",
    "limit_training",
    "save_for_training",
    "EXERCISES_ENV",
]

# "on": the app runs students' code for every visitor; "off": for none; unset: only when the
# app listens on this machine alone (server.address localhost), never over the network.
EXERCISES_ENV = "RESNET_EXPLORER_EXERCISES"
LOCAL = ("127.0.0.1", "::1", "localhost")

MAX_SOURCE_BYTES = 200_000  # a block is a page of code
MARKER = "@@resnet-explorer-report@@"


@dataclass(frozen=True)
class Limits:
    """What one check may use: seconds of wall time and of CPU, bytes of memory beyond what
    the checking process starts with, characters of the student's own output kept."""

    wall_s: float = 60.0
    cpu_s: int = 30
    memory_bytes: int = 2 * 2**30
    output_chars: int = 4000


@dataclass(frozen=True)
class Verdict:
    """How a check ended: `code` 0 (every check passes), 1 (a check fails: `report` says
    which and why) or 2 (the file could not be judged: `message` says why, in one line);
    `output` is what the student's code printed, cut to the limit."""

    code: int
    message: str
    report: dict | None = None
    output: str = ""


TRAINING_MEMORY_BYTES = 4 * 2**30  # training holds a batch's activations: more than a check


def limit_training(configs: list[dict], device_type: str) -> bool:
    """In a process about to train a student's net (a job worker, `exercise train`): cap its
    memory at `TRAINING_MEMORY_BYTES` beyond what it uses now, when any of `configs` names a
    student's file. Only on the CPU: an address-space limit stops CUDA from starting, so on a
    GPU the run's own size checks are the only bound. True when a limit was set."""
    if device_type != "cpu" or not any(config.get("student") for config in configs):
        return False
    limit_address_space(TRAINING_MEMORY_BYTES)
    return True


def save_for_training(source: str, folder: str | os.PathLike) -> Path:
    """The student's source saved as `folder`/student-<hash>.py for a training job (the same
    code, the same file; an existing file is never replaced). Its path goes in the config."""
    name = f"student-{hashlib.sha256(source.encode()).hexdigest()[:16]}.py"
    path = Path(folder) / name
    Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        write_new(path, lambda stream: stream.write(source.encode("utf-8")))
    except FileExistsError:
        pass  # written before, by this function: the name is the content's hash
    return path


def may_run(listens_on: str | None, setting: str | None) -> tuple[bool, str]:
    """Whether the app may run a student's code, and if not, why (one sentence for the page).

    `listens_on` is the address the app's server binds (Streamlit's server.address; None or
    "" means every network interface). The limits protect the machine from mistakes, not from
    a visitor who means harm, so an app others can reach runs no visitor's code unless the
    teacher says so with `EXERCISES_ENV`=on; `off` turns it off everywhere.
    """
    setting = (setting or "").strip().lower()
    if setting == "on":
        return True, ""
    if setting == "off":
        return False, f"Running code is turned off on this server ({EXERCISES_ENV}=off)."
    if listens_on in LOCAL:
        return True, ""
    return False, (
        "This app listens beyond this machine, so it runs a visitor's code only when it was "
        f"started with {EXERCISES_ENV}=on. Download your file and check it on your own "
        "machine: python -m resnet_core exercise check residual_block FILE."
    )


def judge_file(exercise_id: str, path: str | os.PathLike, limits: Limits = Limits()) -> Verdict:
    """Check the student's file `path` against the exercise (see `judge_source`)."""
    get_exercise(exercise_id)  # an unknown exercise: ValueError before anything runs
    try:
        source = read_regular_text(path, MAX_SOURCE_BYTES)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return Verdict(2, f"{path}: cannot be read ({reason})")
    return judge_source(exercise_id, source, Path(path).name, limits)


def judge_source(
    exercise_id: str, source: str, name: str = "student.py", limits: Limits = Limits()
) -> Verdict:
    """Check a student's source: compiled here (a syntax error is reported with its line,
    nothing run), then run and checked in a limited process of its own."""
    exercise = get_exercise(exercise_id)
    try:
        compile(source, name, "exec")
    except SyntaxError as error:
        return Verdict(2, f"{name}, line {error.lineno}: syntax error ({error.msg})")
    with tempfile.TemporaryDirectory(prefix="resnet-exercise-") as work:
        Path(work, "student.py").write_text(source, encoding="utf-8")
        return _run_child(exercise.id, Path(work), limits, name)


def _run_child(exercise_id: str, work: Path, limits: Limits, name: str) -> Verdict:
    package_root = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env |= {"PYTHONPATH": package_root, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", __name__, exercise_id, "student.py", name]
    command += [str(limits.cpu_s), str(limits.memory_bytes)]
    nonce = secrets.token_hex(8)  # on stdin: the student's code cannot print a report of ours
    try:
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=limits.wall_s,
            input=nonce + "\n",
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Verdict(2, f"{name}: stopped after {limits.wall_s:.0f} s (the time limit): an "
                       "endless loop, or far too much work for a small block?")  # fmt: skip
    return _verdict(done, limits, name, MARKER + nonce)


def _verdict(done: subprocess.CompletedProcess, limits: Limits, name: str, marker: str) -> Verdict:
    lines = done.stdout.splitlines()
    reports = [line[len(marker) :] for line in lines if line.startswith(marker)]
    output = "\n".join(line for line in lines if not line.startswith(marker))
    output = (output + done.stderr)[: limits.output_chars]
    if reports:
        result = parse_json(reports[-1])
        if "error" in result:
            return Verdict(2, f"{name}: {result['error']}", output=output)
        return Verdict(0 if result["passed"] else 1, "", result, output)
    if done.returncode in (-24, 152):  # SIGXCPU
        return Verdict(
            2, f"{name}: stopped after {limits.cpu_s} s of CPU time (the CPU time limit)"
        )
    if "MemoryError" in done.stderr or done.returncode in (-9, 137):
        mb = limits.memory_bytes // 2**20
        return Verdict(2, f"{name}: stopped at the memory limit ({mb:,} MB): a huge tensor?")
    last = [line for line in done.stderr.splitlines() if line.strip()]
    return Verdict(2, f"{name}: the check stopped ({last[-1][:200] if last else done.returncode})")


def _limit(cpu_s: int, memory_bytes: int) -> None:
    """In the child: cap CPU seconds, and memory at `memory_bytes` beyond what it uses now."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    limit_address_space(memory_bytes)


def _child(exercise_id: str, file: str, name: str, cpu_s: int, memory_bytes: int) -> dict:
    """Run the student's file and check its class; the report (or the error) as a dict."""
    exercise = get_exercise(exercise_id)
    _limit(cpu_s, memory_bytes)
    try:
        namespace = runpy.run_path(file, run_name="student")
    except BaseException as error:  # noqa: BLE001 - the student's code: any error is told
        text = f"{type(error).__name__}: {error}"
        if isinstance(error, MemoryError) or "allocate" in text or is_out_of_memory(text):
            return {"error": f"stopped at the memory limit ({memory_bytes // 2**20:,} MB): a "
                    "huge tensor?"}  # fmt: skip
        return {"error": f"running the file raised {text}"[:300]}
    cls = namespace.get(exercise.class_name)
    if not isinstance(cls, type):
        return {"error": f"no class {exercise.class_name} in the file; the exercise asks for one"}
    report = exercise.checks(cls)
    return {
        "exercise": report.exercise,
        "passed": report.passed,
        "findings": [vars(f) for f in report.findings],
        "text": str(report),
    }


def _main(argv: list[str]) -> None:
    """The child of `judge_source`: EXERCISE FILE NAME CPU_S MEMORY, the nonce on stdin. The
    report line starts with the marker and the nonce, which the student's code never sees
    (it is read before their code runs and kept in this frame)."""
    nonce = sys.stdin.readline().strip()
    exercise, file, name, cpu, memory = argv[:5]
    result = _child(exercise, file, name, int(cpu), int(memory))
    sys.stdout.write("\n" + MARKER + nonce + json.dumps(result) + "\n")


if __name__ == "__main__":
    _main(sys.argv[1:])
