"""Compare two pytest JUnit reports of datasets' tests: released sources, then patched ones.

    python compare.py BEFORE.xml AFTER.xml PATCH...

The tests a patch adds (its ``+def test_...`` lines under ``tests/``) must fail before and pass
after; no other test may go from passed to anything else; nothing may fail after. Prints the
counts of both runs, every test whose outcome changed, and why tests were skipped; exits 1
when a rule is broken.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def outcomes(report: Path) -> tuple[dict[str, str], Counter[str]]:
    results: dict[str, str] = {}
    reasons: Counter[str] = Counter()
    for case in ET.parse(report).iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None:
            results[test_id] = "failed"
        elif case.find("error") is not None:
            results[test_id] = "error"
        elif (skipped := case.find("skipped")) is not None:
            results[test_id] = "skipped"
            reasons[_reason(skipped.get("message") or "")] += 1
        else:
            results[test_id] = "passed"
    return results, reasons


def _reason(message: str) -> str:
    if "not in the sdist" in message:
        return "needs datasets' tests/fixtures or tests/utils.py helpers (not in the sdist)"
    if "run is offline" in message:
        return "tried to reach the network (the run is offline)"
    if message.startswith("test requires"):
        return "optional library not installed (" + message.removeprefix("test requires ") + ")"
    return message[:100]


def new_tests(patches: list[Path]) -> dict[str, str]:
    """``module::test_name`` -> patch, for every test function a patch adds under tests/."""
    found: dict[str, str] = {}
    for patch in patches:
        module = None
        for line in patch.read_text(encoding="utf-8").splitlines():
            if line.startswith("+++ "):
                path = line[4:].removeprefix("b/")
                module = path[:-3].replace("/", ".") if path.startswith("tests/") else None
            elif module and (match := re.match(r"\+def (test_\w+)\(", line)):
                found[f"{module}::{match.group(1)}"] = patch.name
    return found


def main() -> int:
    before, before_reasons = outcomes(Path(sys.argv[1]))
    after, _ = outcomes(Path(sys.argv[2]))
    added = new_tests([Path(p) for p in sys.argv[3:]])

    def added_by(test_id: str) -> str | None:
        return added.get(test_id.split("[")[0])

    for name, run in (("before (5.2.0 sources)", before), ("after (patched sources)", after)):
        counts = Counter(run.values())
        print(f"{name:24} " + ", ".join(f"{counts[k]} {k}" for k in
                                         ("passed", "failed", "error", "skipped")))
    problems = []
    print("\noutcome changed (test, before -> after, added by):")
    for test_id in sorted(set(before) | set(after)):
        b, a = before.get(test_id, "absent"), after.get(test_id, "absent")
        patch = added_by(test_id)
        if b != a:
            print(f"  {test_id}: {b} -> {a}" + (f"  [{patch}]" if patch else ""))
        if patch:
            if (b, a) != ("failed", "passed"):
                problems.append(f"{test_id} (added by {patch}): {b} -> {a}, "
                                "expected failed -> passed")
        elif b == "passed" and a != "passed":
            problems.append(f"{test_id}: passed on 5.2.0, {a} once patched")
        elif a in ("failed", "error"):
            problems.append(f"{test_id}: {a} once patched")
    missing = sorted(set(added) - {t.split("[")[0] for t in after})
    problems += [f"{t} (added by {added[t]}) did not run" for t in missing]
    print("\nskipped, and why (both runs alike):")
    for reason, n in before_reasons.most_common():
        print(f"  {n:4}  {reason}")
    print()
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    runs = sum(1 for t in after if added_by(t))
    print(f"OK: the {len(added)} added test functions ({runs} tests) fail on 5.2.0 and pass once "
          "patched; no other test changed outcome.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
