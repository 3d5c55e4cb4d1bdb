"""Each class of file access has one chokepoint, and no module goes around it.

Reading: `resnet_core.common.files` opens only regular files (a FIFO never blocks), refuses
huge files, and range-checks JSON numbers. Loading tensors: `resnet_core.common.weights`
(weights_only=True, refusals decided by exception type). New outputs: `check_output` and
`write_new` in `resnet_core.common.files` (never over an existing file or into a run
folder). A check per entry point misses the next entry point; a scan does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = [
    *sorted((REPO / "resnet_core").rglob("*.py")),
    *sorted((REPO / "pages").rglob("*.py")),
    REPO / "app.py",
]
FILES = "resnet_core/common/files.py"
WEIGHTS = "resnet_core/common/weights.py"

# call (as `ast.unparse` writes the callee, or ".name" for any method of that name) -> the
# only modules that may make it
CHOKEPOINTS: dict[str, set[str]] = {
    "json.load": {FILES},
    "json.loads": {FILES},
    ".read_text": {FILES},
    ".read_bytes": {FILES},
    "open": {FILES},
    "os.open": {FILES},
    "fcntl.flock": {"resnet_core/training/runs.py", "resnet_core/training/jobs.py"},
    "os.fdopen": {FILES},
    "io.open": {FILES},
    "torch.load": {WEIGHTS},
    "Image.open": set(),
    "pickle.load": set(),
    "pickle.loads": set(),
    "np.load": set(),
}

# Justified exceptions: (module, callee) -> why. Each is a write or a lock, not a read.
ALLOWED: dict[tuple[str, str], str] = {
    ("resnet_core/training/recording.py", "open"): (
        "metrics.jsonl is appended to line by line for the run's life (a writer, not a reader)"
    ),
    ("resnet_core/training/jobs.py", "open"): "the queue's lock file, opened to flock it",
    ("resnet_core/training/runs.py", "os.open"): "a run folder opened to flock it",
}


def _callee(node: ast.Call) -> str:
    if isinstance(node.func, ast.Attribute) and not isinstance(node.func.value, ast.Name):
        return "." + node.func.attr
    return ast.unparse(node.func)


def _in_memory(argument: ast.expr) -> bool:
    return isinstance(argument, ast.Call) and ast.unparse(argument.func) == "io.BytesIO"


def calls(path: Path) -> list[tuple[int, str]]:
    """(line, callee) of every call a chokepoint guards."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node)
        if node.args and _in_memory(node.args[0]):
            continue  # reads bytes already read through the chokepoint
        method = "." + callee.rsplit(".", 1)[-1] if "." in callee else None
        for name in dict.fromkeys((callee, method)):
            if name in CHOKEPOINTS:
                found.append((node.lineno, name))
    return sorted(found)


def _bypasses() -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in SCANNED:
        where = path.relative_to(REPO).as_posix()
        for line, name in calls(path):
            if where not in CHOKEPOINTS[name]:
                found.setdefault((where, name), []).append(line)
    return found


def test_the_scan_sees_what_it_is_meant_to(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import json, torch\n"
        "json.loads(text)\n"
        "Path(p).read_text()\n"
        "open(p)\n"
        "torch.load(p, weights_only=True)\n"
        "self.stream.read_bytes()\n"
        "Image.open(io.BytesIO(data))\n"
        "print(p)\n"
    )
    assert [name for _line, name in calls(sample)] == [
        "json.loads",
        ".read_text",
        "open",
        "torch.load",
        ".read_bytes",
    ]


def test_no_module_reads_or_loads_around_its_chokepoint():
    bypasses = {key: lines for key, lines in _bypasses().items() if key not in ALLOWED}
    assert not bypasses, "\n".join(
        f"{where}:{lines}: {name} outside its chokepoint"
        for (where, name), lines in bypasses.items()
    )


# Outputs a user names (`--out`, `--onnx`, `--tensorboard`) and study results never replace a
# file: these modules write through `check_output`/`write_new`, never the replacing writers.
NO_REPLACING = ("resnet_core/cli/", "resnet_core/studies/")
REPLACING = {"write_atomic", "write_bytes_atomic", "write_json_atomic", "write_sample"}


def test_outputs_never_go_through_a_replacing_writer():
    found = [
        f"{path.relative_to(REPO).as_posix()}:{node.lineno}: {ast.unparse(node.func)}"
        for path in SCANNED
        if path.relative_to(REPO).as_posix().startswith(NO_REPLACING)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and ast.unparse(node.func).rsplit(".", 1)[-1] in REPLACING
        and not ast.unparse(node.func).startswith("study.")
    ]
    assert not found, "\n".join(found)


def test_nets_are_built_only_where_their_size_is_checked():
    """`build_model` checks every spec's size before a weight is allocated; constructing a
    net class directly would skip it."""
    constructors = {"ResNet", "SmallCNN", "SimpleCNN"}
    found = [
        f"{path.relative_to(REPO).as_posix()}:{node.lineno}"
        for path in SCANNED
        if path.relative_to(REPO).as_posix() != "resnet_core/nets/model.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in constructors
    ]
    assert not found, found


def test_every_exception_is_still_needed():
    stale = [key for key in ALLOWED if key not in _bypasses()]
    assert not stale, f"no longer needed, remove from ALLOWED: {stale}"
