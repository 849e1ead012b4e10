"""Metadata tables: "n/a" is the only null ("None" is a value), a bad value names its file,
line and column, and table rows are checked against the subject and session folders."""

from __future__ import annotations

from pathlib import Path

from bids_hf import Schema, index_bids, many, one
from bids_hf._rows import assemble_rows
from bids_hf._tables import convert
from bids_hf.testing import write_json, write_nifti, write_tsv
from conftest import check


def test_none_is_a_value_and_only_na_is_null() -> None:
    assert convert("None", "string", "x") == "None"
    assert convert("n/a", "string", "x") is None
    assert convert("NA", "string", "x") == "NA"
    assert convert("", "string", "x") == ""
    assert convert("n/a", "float32", "x") is None
    assert convert("", "float32", "x") is None
    assert convert("61.5", "float32", "x") == 61.5
    assert convert("yes", "bool", "x") is True



def test_bad_metadata_value_names_file_line_and_column(arc_copy: Path) -> None:
    lines = (arc_copy / "participants.tsv").read_text().splitlines()
    cells = lines[2].split("\t")
    cells[1] = "sixty"
    lines[2] = "\t".join(cells)
    (arc_copy / "participants.tsv").write_text("\n".join(lines) + "\n")
    schema = Schema(columns={"t1w": many(suffix="T1w")},
                    metadata={"participants.tsv": {"age_at_stroke": "float32"}})
    rowset = assemble_rows(index_bids(arc_copy), schema)
    failed = check(rowset, "metadata participants.tsv")
    assert failed.blocking
    assert "participants.tsv line 3, column age_at_stroke: 'sixty' is not a valid float32" \
        in failed.details



def test_tsv_rows_without_folders_and_folders_without_rows(arc_copy: Path) -> None:
    lines = (arc_copy / "participants.tsv").read_text().splitlines()
    dropped = lines[1].split("\t")[0]
    lines = [lines[0], *lines[2:], "sub-GHOST\t50\tF\tw\t60.0\t100\tBroca"]
    (arc_copy / "participants.tsv").write_text("\n".join(lines) + "\n")
    schema = Schema(columns={"t1w": many(suffix="T1w")},
                    metadata={"participants.tsv": {"wab_type": "string"}})
    rowset = assemble_rows(index_bids(arc_copy), schema)
    agreement = check(rowset, "participants.tsv matches subjects folders")
    assert not agreement.passed and agreement.actual == 2
    assert "In participants.tsv but no folder: sub-GHOST" in agreement.details
    assert f"Folder but no row in participants.tsv: {dropped}" in agreement.details



def test_sessions_tsv_values_attach_to_their_session(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_json(root / "dataset_description.json", {"Name": "t"})
    for ses in ("1", "2"):
        write_nifti(root / f"sub-01/ses-{ses}/anat/sub-01_ses-{ses}_T1w.nii.gz")
    write_tsv(root / "sub-01/sub-01_sessions.tsv",
              [{"session_id": "ses-1", "age": "60"}, {"session_id": "ses-2", "age": "n/a"}])
    rowset = assemble_rows(index_bids(root), Schema(columns={"t1w": one(suffix="T1w")},
                                                    metadata={"sessions.tsv": {"age": "float32"}}))
    assert [r.values["age"] for r in rowset.rows] == [60.0, None]
