"""The official BIDS validator as a pre-flight: its errors reported (blocking under strict),
its absence said, not failed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bids_hf._bids_validator import bids_validator_check


def test_bids_validator_errors_are_reported(arc_copy: Path) -> None:
    (arc_copy / "dataset_description.json").unlink()
    check = bids_validator_check(arc_copy)
    assert check.actual != "not installed", "bids-validator-deno is in requirements-dev.txt"
    assert not check.passed and check.severity == "warning"
    assert "MISSING_DATASET_DESCRIPTION" in check.details
    assert bids_validator_check(arc_copy, strict=True).blocking



def test_bids_validator_absent_is_said_not_failed(arc_tree: Path, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    check = bids_validator_check(arc_tree)
    assert check.passed and check.actual == "not installed"
    assert "pip install bids-validator-deno" in check.details
