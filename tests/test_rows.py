"""Row assembly: one row per subject, session or image; a single-valued column matching two
files is an error naming both; runs in natural order; companions aligned and inherited;
splits from subject lists or a metadata column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bids_hf import Schema, index_bids, many, one
from bids_hf._rows import assemble_rows
from bids_hf.testing import write_json, write_nifti
from conftest import check, load_schema, run_pipeline


@pytest.fixture
def two_t2w(tmp_path: Path) -> Path:
    """sub-01 ses-1 with two T2w runs; sub-02 ses-1 with one."""
    root = tmp_path / "ds"
    write_json(root / "dataset_description.json", {"Name": "t", "BIDSVersion": "1.10.0"})
    for sub, runs in (("01", (1, 2)), ("02", (1,))):
        for run in runs:
            write_nifti(root / f"sub-{sub}/ses-1/anat/sub-{sub}_ses-1_run-{run}_T2w.nii.gz")
        write_nifti(root / f"sub-{sub}/ses-1/anat/sub-{sub}_ses-1_T1w.nii.gz")
    return root



def test_single_column_matching_two_files_is_an_error_naming_both(two_t2w: Path) -> None:
    rowset = assemble_rows(index_bids(two_t2w), Schema(columns={"t2w": one(suffix="T2w"),
                                                                 "t1w": one(suffix="T1w")}))
    ambiguity = check(rowset, "one file per single-valued cell")
    assert ambiguity.blocking and ambiguity.actual == 1
    assert "sub-01/ses-1/anat/sub-01_ses-1_run-1_T2w.nii.gz" in ambiguity.details
    assert "sub-01/ses-1/anat/sub-01_ses-1_run-2_T2w.nii.gz" in ambiguity.details
    assert "They differ in run" in ambiguity.details
    assert "Declare it many(...)" in ambiguity.details and "run=1" in ambiguity.details
    # Nothing was silently dropped: the planned cell still holds both files.
    assert len(rowset.rows[0].images["t2w"]) == 2



def test_many_keeps_every_run_in_natural_order(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_json(root / "dataset_description.json", {"Name": "t"})
    for run in (11, 6, 2, 10, 1):
        write_nifti(root / f"sub-01/anat/sub-01_run-{run}_T2w.nii.gz")
    rowset = assemble_rows(index_bids(root), Schema(row="subject",
                                                    columns={"t2w": many(suffix="T2w")}))
    (row,) = rowset.rows
    assert row.values["t2w_run"] == [1, 2, 6, 10, 11]
    assert [f.path.split("_")[1] for f in row.images["t2w"]] == \
        ["run-1", "run-2", "run-6", "run-10", "run-11"]



def test_row_per_subject_without_sessions_and_session_rows_of_session_less_data(
        aomic_tree: Path) -> None:
    index = index_bids(aomic_tree)
    by_subject = assemble_rows(index, load_schema("aomic_piop1"))
    assert [r.key for r in by_subject.rows] == ["sub-0001", "sub-0002", "sub-0003"]
    by_session = assemble_rows(index, Schema(columns={"t1w": one(suffix="T1w")}))
    assert [r.session for r in by_session.rows] == [None, None, None]
    assert not [c for c in by_session.checks if c.blocking]



def test_subject_rows_need_session_filters_when_sessions_repeat_a_scan(isles_tree: Path) -> None:
    index = index_bids(isles_tree)
    rowset = assemble_rows(index, Schema(row="subject", columns={"any": one(suffix="dwi")}))
    assert not [c for c in rowset.checks if c.blocking]  # dwi only in ses-02
    repeated = assemble_rows(index, Schema(row="subject", columns={
        "map": one(pipeline="perfusion_maps", space="ncct")}))
    assert "They differ in suffix" in check(repeated, "one file per single-valued cell").details



def test_image_rows_make_a_flat_table_of_scans(arc_tree: Path, tmp_path: Path) -> None:
    schema = Schema(row="image", columns={"anat": many(datatype="anat"),
                                          "lesion": many(pipeline="lesion_masks")})
    staged = run_pipeline(arc_tree, schema, tmp_path / "flat")
    n_files = sum(1 for p in arc_tree.rglob("*.nii.gz")
                  if "/anat/" in p.as_posix())
    assert len(staged.rowset.rows) == n_files
    features = staged.rowset.features
    for name in ("subject_id", "session_id", "column", "pipeline", "suffix", "run", "nifti"):
        assert name in features
    row = next(r for r in staged.rowset.rows if r.values["column"] == "lesion")
    assert row.values["pipeline"] == "lesion_masks" and row.values["desc"] == "lesion"



def test_companions_are_aligned_and_inherited(arc_tree: Path, tmp_path: Path) -> None:
    rowset = assemble_rows(index_bids(arc_tree), load_schema("arc"))
    row = next(r for r in rowset.rows if len(r.images["dwi"]) == 2)
    assert len(row.values["dwi_bval"]) == len(row.values["dwi_bvec"]) == 2
    assert row.values["dwi_bval"][0][0] == 0.0 and len(row.values["dwi_bval"][0]) == 4
    assert len(row.values["dwi_bvec"][0]) == 3 and len(row.values["dwi_bvec"][0][0]) == 4
    # Inheritance: the top-level task-rest_bold.json merges under the file's own sidecar.
    rest = next(r for r in rowset.rows if r.images["bold_rest"])
    sidecar = json.loads(rest.values["bold_rest_sidecar"][0])
    assert sidecar["RepetitionTime"] == 1.65 and sidecar["PhaseEncodingDirection"] == "j-"



def test_top_level_companions_of_a_real_layout() -> None:
    from conftest import bids_example

    root = bids_example("ds114")
    rowset = assemble_rows(index_bids(root), Schema(columns={
        "dwi": one(suffix="dwi", companions=("bval", "bvec"))}))
    assert check(rowset, "companion files present").passed
    assert len(rowset.rows[0].values["dwi_bvec"]) == 3



def test_missing_companion_is_an_error(arc_copy: Path) -> None:
    victim = next(arc_copy.rglob("*_dwi.bval"))
    victim.unlink()
    rowset = assemble_rows(index_bids(arc_copy), load_schema("arc"))
    missing = check(rowset, "companion files present")
    assert missing.blocking and victim.name.replace(".bval", ".nii.gz") in missing.details



def test_splits_from_lists_and_from_a_column(arc_tree: Path) -> None:
    index = index_bids(arc_tree)
    subjects = [f"sub-{s}" for s in index.subjects]
    listed = assemble_rows(index, Schema(columns={"t1w": many(suffix="T1w")},
                                         splits={"train": subjects[:3], "test": subjects[3:]}))
    assert listed.splits == ["train", "test"]
    assert {r.subject for r in listed.rows_of("test")} == set(index.subjects[3:])
    incomplete = assemble_rows(index, Schema(columns={"t1w": many(suffix="T1w")},
                                             splits={"train": subjects[:3]}))
    assert check(incomplete, "every row has a split").blocking
    by_column = assemble_rows(index, Schema(
        columns={"t1w": many(suffix="T1w")}, splits="sex",
        metadata={"participants.tsv": {"sex": "string"}}))
    assert set(by_column.splits) <= {"M", "F"}
