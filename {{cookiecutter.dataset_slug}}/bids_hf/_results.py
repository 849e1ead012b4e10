"""Check results: one ``ValidationCheck`` per thing checked, gathered in a ``ValidationResult``.

Every stage reports here (row assembly, pre-build checks, post-staging verification), so
push.py and the generated repo's tests print the same readable table and fail the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class ValidationCheck:
    """One check. ``details`` says which files and what to do when it did not pass."""

    name: str
    expected: Any
    actual: Any
    passed: bool
    details: str = ""
    severity: Severity = "error"

    @property
    def blocking(self) -> bool:
        return not self.passed and self.severity == "error"


@dataclass
class ValidationResult:
    checks: list[ValidationCheck] = field(default_factory=list)

    def add(self, check: ValidationCheck) -> ValidationCheck:
        self.checks.append(check)
        return check

    def extend(self, checks: Iterable[ValidationCheck]) -> None:
        self.checks.extend(checks)

    @property
    def all_passed(self) -> bool:
        """True when no error-severity check failed (warnings are reported, not blocking)."""
        return not any(c.blocking for c in self.checks)

    @property
    def failures(self) -> list[ValidationCheck]:
        return [c for c in self.checks if c.blocking]

    @property
    def warnings(self) -> list[ValidationCheck]:
        return [c for c in self.checks if not c.passed and c.severity == "warning"]

    def summary(self) -> str:
        """A fixed-width table, then the details of every check that did not pass."""
        if not self.checks:
            return "(no checks)"
        rows = [("", "check", "expected", "actual")]
        for c in self.checks:
            mark = "ok" if c.passed else {"error": "FAIL", "warning": "warn", "info": "note"}[
                c.severity]
            rows.append((mark, c.name, _short(c.expected), _short(c.actual)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        for c in self.checks:
            if not c.passed and c.details:
                tag = {"error": "error", "warning": "warning", "info": "note"}[c.severity]
                lines.append(f"\n[{tag}] {c.name}:\n" + _indent(c.details))
        return "\n".join(lines)


def _short(value: Any, limit: int = 40) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
