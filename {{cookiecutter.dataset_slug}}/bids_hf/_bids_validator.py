"""The official BIDS validator, when it is installed (``pip install bids-validator-deno``).

It is run as a pre-flight and its errors become one check. It is never downloaded at run
time: when the command is absent the check says so and passes. Validator errors are a
warning by default (many publishable datasets carry some) and block under ``--strict``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ._results import ValidationCheck

COMMAND = "bids-validator-deno"


def bids_validator_check(root: Path, *, strict: bool = False,
                         timeout: float = 1800) -> ValidationCheck:
    name = "official BIDS validator"
    # Installed into this environment but the environment not activated: look beside Python.
    beside = Path(sys.executable).parent / COMMAND
    command = shutil.which(COMMAND) or (str(beside) if beside.is_file() else None)
    if command is None:
        return ValidationCheck(name=name, expected="no errors", actual="not installed",
                               passed=True, severity="info",
                               details=f"pip install bids-validator-deno to run it ({COMMAND}).")
    try:
        done = subprocess.run([command, "--format", "json", "--ignoreWarnings", str(root)],
                              capture_output=True, text=True, timeout=timeout, check=False)
        issues = json.loads(done.stdout)["issues"]["issues"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as err:
        return ValidationCheck(name=name, expected="a report", actual="failed", passed=False,
                               severity="warning", details=f"{COMMAND} did not run: {err}")
    errors = [i for i in issues if i.get("severity") == "error"]
    by_code = Counter(str(i.get("code")) for i in errors)
    examples: dict[str, str] = {}
    for issue in errors:
        examples.setdefault(str(issue.get("code")), str(issue.get("location", "")).lstrip("/"))
    details = "\n".join(f"{code}: {n} (e.g. {examples[code]})" for code, n in by_code.most_common())
    return ValidationCheck(
        name=name, expected="no errors", actual=f"{len(errors)} errors", passed=not errors,
        severity="error" if strict else "warning",
        details=details + (f"\nRun `{COMMAND} {root}` for the full report." if errors else ""),
    )
