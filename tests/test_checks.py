"""Publish only what was checked: each bad input stops push.py before anything is built,
naming the file; personal information is found in tables, sidecars and NIfTI headers."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids_hf import assemble_rows, index_bids, pre_build_checks, write_nifti
from bids_hf._bids_validator import bids_validator_check
from bids_hf._phi import scan_nifti_header, scan_sidecars, scan_tables, scan_text
from conftest import run_push


def push(repo: Path, root: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_push(repo, "--no-progress", "--no-bids-validator", "--bids-root", str(root),
                    "--out", str(out), *args)


def first(root: Path, pattern: str) -> Path:
    return min(root.rglob(pattern))


def make_empty(root: Path) -> str:
    image = first(root, "*_T1w.nii.gz")
    image.write_bytes(b"")
    return image.relative_to(root).as_posix()


def make_truncated(root: Path) -> str:
    image = first(root, "*_dwi.nii.gz")
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    return image.relative_to(root).as_posix()


def make_not_nifti(root: Path) -> str:
    image = first(root, "*_FLAIR.nii.gz")
    image.write_bytes(gzip.compress(b"this is a text file, not an image\n" * 20))
    return image.relative_to(root).as_posix()


def make_count_mismatch(repo: Path) -> str:
    text = (repo / "schema.py").read_text()
    text = text.replace("SCHEMA = Schema(", "SCHEMA = Schema(\n    expected=Expected(files={'t1w': 999}),")
    (repo / "schema.py").write_text("from bids_hf import Expected\n" + text)
    return "Expected 999, found"


def make_patient_name(root: Path) -> str:
    sidecar = first(root, "*_bold.json")
    data = json.loads(sidecar.read_text())
    data["PatientName"] = "DOE^JANE"
    sidecar.write_text(json.dumps(data))
    return sidecar.relative_to(root).as_posix()


def make_named_descrip(root: Path) -> str:
    image = first(root, "*_T2w.nii.gz")
    write_nifti(image, (10, 10, 8), descrip="Scan of Jane Doe")
    return image.relative_to(root).as_posix()


BAD_INPUTS = {
    "empty image": (make_empty, "are 0 bytes"),
    "truncated gzip": (make_truncated, "cannot be decompressed"),
    "not a NIfTI": (make_not_nifti, "not a NIfTI file"),
    "PatientName in a sidecar": (make_patient_name, "key 'PatientName'"),
    "a name in descrip": (make_named_descrip, "header descrip: 'Scan of Jane Doe' contains what reads like a name"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_stops_before_anything_is_built(case: str, arc_repo: Path, arc_copy: Path,
                                                  tmp_path: Path) -> None:
    spoil, message = BAD_INPUTS[case]
    named = spoil(arc_copy)
    out = tmp_path / "staged"
    done = push(arc_repo, arc_copy, out)
    assert done.returncode == 1, done.stderr
    assert named in done.stderr and message in done.stderr
    assert "nothing was built" in done.stderr
    assert not (out / "data").exists()


def test_count_mismatch_stops_before_anything_is_built(arc_repo: Path, arc_tree: Path,
                                                       tmp_path: Path) -> None:
    message = make_count_mismatch(arc_repo)
    out = tmp_path / "staged"
    done = push(arc_repo, arc_tree, out)
    assert done.returncode == 1
    assert re.search(r"FAIL\s+files in t1w", done.stderr) and message in done.stderr
    assert not (out / "data").exists()


def test_allow_phi_reports_but_does_not_block(arc_repo: Path, arc_copy: Path, tmp_path: Path) -> None:
    named = make_patient_name(arc_copy)
    done = push(arc_repo, arc_copy, tmp_path / "staged", "--allow-phi")
    assert done.returncode == 0, done.stderr
    assert re.search(r"warn\s+no personal information \(PHI\)", done.stderr)
    assert f"{named}: key 'PatientName'" in done.stderr
    assert "--allow-phi given: reported, not blocking" in done.stderr


# -- the privacy scanner, unit by unit ------------------------------------------------------


@pytest.mark.parametrize(("text", "found"), [
    ("jane.doe@example.org", "an e-mail address"),
    ("(555) 123-4567", "a phone number"),
    ("123-45-6789", "a social-security number"),
    ("DOE^JANE", "a DICOM-style person name"),
    ("2019-03-04T10:00:00", "an exact calendar date"),
    ("03/04/2019", "an exact calendar date"),
])
def test_value_patterns(text: str, found: str) -> None:
    assert found in scan_text(text)


@pytest.mark.parametrize("text", ["1853-03-04T10:00:00", "Broca", "None", "61.5", "M2001",
                                  "TE=30;Time=101530.000", "n/a"])
def test_ordinary_values_are_not_flagged(text: str) -> None:
    assert scan_text(text) == []


def test_tables_columns_and_values(tmp_path: Path) -> None:
    (tmp_path / "participants.tsv").write_text(
        "participant_id\tage\tdate_of_birth\tcontact\nsub-01\t61\t1960-02-01\tjane@example.org\n")
    (tmp_path / "desc-aseg_dseg.tsv").write_text("index\tname\n1\tLeft-Cerebral\n")
    findings = [str(f) for f in scan_tables(tmp_path)]
    assert "participants.tsv: column 'date_of_birth': its name suggests identity or contact data" in findings
    assert any("column 'contact'" in f and "e-mail" in f for f in findings)
    assert not any("dseg" in f for f in findings)  # lookup tables are not about people


def test_sidecar_keys_site_and_redacted(tmp_path: Path) -> None:
    (tmp_path / "a_bold.json").write_text(json.dumps({
        "PatientID": "12345", "InstitutionName": "Example Hospital", "PatientName": "REDACTED",
        "RepetitionTime": 2.0}))
    findings = scan_sidecars(tmp_path)
    assert [(f.where, f.blocking) for f in findings] == [("key 'PatientID'", True),
                                                         ("key 'InstitutionName'", False)]


def test_header_extension_carrying_dicom_fields(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"(0010,0010) PatientName DOE^J"))
    path = tmp_path / "x.nii"
    nib.save(img, path)
    findings = scan_nifti_header("x.nii", path.read_bytes()[:2048])
    assert [f.what for f in findings] == ["carries DICOM fields ['PatientName']"]


# -- the official validator ---------------------------------------------------------------


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


def test_pre_build_checks_pass_on_a_clean_tree(arc_tree: Path) -> None:
    from conftest import load_schema

    rowset = assemble_rows(index_bids(arc_tree), load_schema("arc"))
    checks = pre_build_checks(rowset)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    names = {c.name for c in checks}
    assert {"images decompress and parse", "no personal information (PHI)",
            "no empty images", "required files"} <= names
