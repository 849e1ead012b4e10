"""The privacy scanner, unit by unit: value patterns, table columns and values, sidecar keys
(identity, site, redacted) and NIfTI header extensions."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids_hf._phi import scan_nifti_header, scan_sidecar, scan_tables, scan_text


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
    published = {"participants.tsv": {"age", "date_of_birth", "contact"}}
    findings = [str(f) for f in scan_tables(tmp_path, published)]
    assert ("participants.tsv: column 'date_of_birth': its name suggests identity or contact "
            "data") in findings
    assert any("column 'contact'" in f and "e-mail" in f for f in findings)
    assert not any("dseg" in f for f in findings)  # lookup tables are not about people



def test_sidecar_keys_site_and_redacted() -> None:
    findings = list(scan_sidecar("a_bold.json", {
        "PatientID": "12345", "InstitutionName": "Example Hospital", "PatientName": "REDACTED",
        "InstitutionAddress": "1 Main St", "AcquisitionTime": "10:15:30", "RepetitionTime": 2.0},
        published=True))
    assert [(f.field, f.blocking) for f in findings] == [
        ("PatientID", True), ("InstitutionName", False), ("InstitutionAddress", False),
        ("AcquisitionTime", True)]



def test_header_extension_carrying_dicom_fields(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"(0010,0010) PatientName DOE^J"))
    path = tmp_path / "x.nii"
    nib.save(img, path)
    findings = scan_nifti_header("x.nii", path.read_bytes()[:2048])
    assert [f.what for f in findings] == ["carries DICOM fields ['PatientName']"]
