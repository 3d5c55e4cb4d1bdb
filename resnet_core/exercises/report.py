"""What a check says about a student's code: one finding per check, in words a student uses,
with the numbers it measured; a report that prints as text and renders as HTML in a notebook."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

__all__ = ["Finding", "Report"]


@dataclass(frozen=True)
class Finding:
    """One check: its name, whether it passed, and what it saw (the likely mistake when not)."""

    check: str
    passed: bool
    message: str


@dataclass
class Report:
    """Every finding of one exercise check, in the order the checks ran."""

    exercise: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.findings) and all(f.passed for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed]

    def add(self, check: str, passed: bool, message: str) -> bool:
        self.findings.append(Finding(check, passed, message))
        return passed

    def __str__(self) -> str:
        lines = [f"{self.exercise}: {'every check passes' if self.passed else 'not yet'}"]
        lines += [
            f"  {'ok  ' if f.passed else 'FAIL'} {f.check}: {f.message}" for f in self.findings
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{'&#10003;' if f.passed else '&#10007;'}</td><td>{html.escape(f.check)}</td>"
            f"<td>{html.escape(f.message)}</td></tr>"
            for f in self.findings
        )
        head = "every check passes" if self.passed else "not yet"
        return f"<p><b>{html.escape(self.exercise)}</b>: {head}</p><table>{rows}</table>"
