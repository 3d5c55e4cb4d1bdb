"""No module reaches into another object's private names.

A leading underscore says "this object's own business": `member._done_event()` in another
module ties that module to how the object works inside, and a refactor of the one silently
breaks the other. So outside `self`/`cls` (and `super()`), the library, the pages, the
benchmarks and the app read only public names; an object that others need to drive offers
a public method for it (as `Trainer.start`/`finish`/`close` do for the lockstep group).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = [
    *sorted((REPO / "resnet_core").rglob("*.py")),
    *sorted((REPO / "pages").rglob("*.py")),
    *sorted((REPO / "benchmarks").rglob("*.py")),
    REPO / "app.py",
]
OWN = ("self", "cls")

# Justified exceptions, each with its reason: (path from the repo root, the expression as
# `ast.unparse` writes it) -> why. The aim is none.
_SUBPARSERS = "argparse has no public name for the type of add_subparsers()'s result"
ALLOWED: dict[tuple[str, str], str] = {
    **{
        (f"resnet_core/cli/{name}.py", "argparse._SubParsersAction"): _SUBPARSERS
        for name in ("app", "exercises", "experiments", "landscape", "lesion", "mechanisms")
    },
    ("resnet_core/training/averaging.py", "torch._foreach_lerp_"): (
        "torch offers no public fused lerp over a list of tensors; one kernel per step "
        "instead of one per parameter"
    ),
}


def _is_private(name: str) -> bool:
    """`_name` or `__name`, not a dunder such as `__dict__`."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own(owner: ast.expr) -> bool:
    """`self.x`, `cls.x` and `super().x` read the object's own names."""
    if isinstance(owner, ast.Name):
        return owner.id in OWN
    return (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "super"
    )


def private_reaches(path: Path) -> list[tuple[int, str]]:
    """(line, expression) of every access to a private attribute of another object."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sorted(
        (node.lineno, ast.unparse(node))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and not _own(node.value)
    )


def _found() -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in SCANNED:
        where = path.relative_to(REPO).as_posix()
        for line, expression in private_reaches(path):
            found.setdefault((where, expression), []).append(line)
    return found


def test_the_check_sees_what_it_is_meant_to(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "class A(B):\n"
        "    def f(self, other):\n"
        "        self._mine, cls._ours, super()._base()\n"
        "        other.__dict__, other.__class__\n"
        "        other._theirs()\n"
        "        other.member.__mangled\n"
        "        text = 'x._in_a_string'  # y._in_a_comment\n",
        encoding="utf-8",
    )
    assert private_reaches(sample) == [(5, "other._theirs"), (6, "other.member.__mangled")]


def test_no_module_reaches_into_another_objects_private_names():
    found = _found()
    reaches = [
        f"{where}:{','.join(map(str, lines))}: {expression}"
        for (where, expression), lines in sorted(found.items())
        if (where, expression) not in ALLOWED
    ]
    assert not reaches, "private names read from outside their object:\n" + "\n".join(reaches)


def test_every_allowed_exception_is_still_needed():
    found = _found()
    assert [key for key in ALLOWED if key not in found] == []
