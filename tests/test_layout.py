"""The core's layout as its package docstring gives it: every module listed once, in an order
in which each module imports only modules listed above it (imports run one way)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bids_hf

CORE = Path(bids_hf.__file__).parent
LISTED = re.findall(r"^    (_\w+|testing) ", bids_hf.__doc__ or "", re.MULTILINE)


def test_the_package_docstring_lists_every_module_once() -> None:
    files = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    assert sorted(LISTED) == files
    assert len(LISTED) == len(set(LISTED))


def test_each_module_imports_only_modules_listed_above_it() -> None:
    for k, name in enumerate(LISTED):
        tree = ast.parse((CORE / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree)  # lazy imports included
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        below = imported - set(LISTED[:k])
        assert not below, f"{name} imports {sorted(below)}, listed below it"
