"""The schema language and row assembly: every way data could be lost is an error or a report.

One test per failure the reference project suffered: a single-valued column matching two
files, unclaimed images, TSV rows without folders, "None" read as null, runs sorted as text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bids_hf import Expected, Options, Schema, SchemaError, index_bids, many, meta, one
from bids_hf import check as run_checks
from bids_hf._rows import assemble_rows
from bids_hf._tables import convert
from bids_hf.testing import write_json, write_nifti, write_tsv
from conftest import SCHEMAS, load_schema, run_pipeline


def check(rowset, name: str):
    return next(c for c in rowset.checks if c.name == name)


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


def test_unclaimed_images_are_reported_and_strict_makes_them_an_error(arc_tree: Path) -> None:
    lax = Schema(columns={"t1w": many(suffix="T1w")})
    rowset = assemble_rows(index_bids(arc_tree), lax)
    coverage = check(rowset, "every NIfTI claimed by a column")
    assert not coverage.passed and not coverage.blocking and coverage.severity == "warning"
    flair = sorted(p.relative_to(arc_tree).as_posix() for p in arc_tree.rglob("*_FLAIR.nii.gz"))
    assert set(flair) <= set(rowset.unclaimed)
    assert coverage.actual == len(rowset.unclaimed) > len(flair)
    assert f"  anat/FLAIR: {len(flair)} (e.g. sub-" in coverage.details
    strict = assemble_rows(index_bids(arc_tree), Schema(columns=lax.columns, strict=True))
    assert check(strict, "every NIfTI claimed by a column").blocking


def test_glob_typo_that_drops_a_whole_modality_is_caught(arc_tree: Path) -> None:
    """The reference project lost all DWI files of a dataset to a glob mismatch."""
    schema = Schema(columns={"t1w": "anat/*_T1w.nii.gz", "dwi": many("dwi/*_dwi.nii")},
                    expected=Expected(files={"dwi": 10}))
    rowset = assemble_rows(index_bids(arc_tree), schema)
    empty = check(rowset, "every column matches files")
    assert empty.blocking and "Column 'dwi'" in empty.details
    counts = {c.name: c for c in run_checks(rowset, Options()).checks}
    assert counts["files in dwi"].blocking and counts["files in dwi"].actual == 0
    assert any("_dwi.nii.gz" in p for p in rowset.unclaimed)


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


def test_pybids_and_short_entity_names_are_the_same_query(arc_tree: Path) -> None:
    index = index_bids(arc_tree)
    long = assemble_rows(index, Schema(columns={"x": many(suffix="T2w", acquisition="tse3")}))
    short = assemble_rows(index, Schema(columns={"x": many(suffix="T2w", acq="tse3")}))
    assert long.column_files("x") == short.column_files("x") > 0
    with pytest.raises(SchemaError, match="Unknown BIDS entity 'acquisitoin'"):
        many(suffix="T2w", acquisitoin="tse3")


def test_globs_and_entity_queries_reach_raw_and_derivatives(arc_tree: Path) -> None:
    index = index_bids(arc_tree)
    rowset = assemble_rows(index, Schema(columns={
        "t1w": many("anat/*_T1w.nii.gz"),
        "lesion": "derivatives/lesion_masks/*_mask.nii.gz",
        "lesion_q": one(pipeline="lesion_masks", suffix="mask", desc="lesion"),
    }))
    assert rowset.column_files("lesion") == rowset.column_files("lesion_q") > 0
    assert all(f.path.startswith("sub-") for r in rowset.rows for f in r.images["t1w"])
    twice = check(rowset, "no file in two columns")
    assert not twice.passed and twice.severity == "warning"


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


def test_metadata_columns_can_be_renamed() -> None:
    with pytest.raises(SchemaError, match="clash with image or id columns"):
        Schema(columns={"t1w": one(suffix="T1w")},
               metadata={"participants.tsv": {"subject_id": "string"}})
    schema = Schema(columns={"t1w": one(suffix="T1w")},
                    metadata={"participants.tsv": {"subject_id": meta("string", name="tsv_id")}})
    assert schema.metadata_columns() == {"tsv_id": "string"}


def test_bidsignore_and_non_bids_names(arc_copy: Path) -> None:
    (arc_copy / ".bidsignore").write_text("derivatives/lesion_masks/\n")
    loose = arc_copy / "sub-M2001" / "extra" / "T1_copy.nii.gz"
    write_nifti(loose)
    outside = arc_copy / "derivatives" / "templates" / "mni.nii.gz"
    write_nifti(outside)
    index = index_bids(arc_copy)
    ignored = [f for f in index.files if f.path.startswith("derivatives/lesion_masks")]
    assert ignored and all(f.bidsignored for f in ignored)  # indexed, marked, never lost
    rowset = assemble_rows(index, Schema(columns={"t1w": many(suffix="T1w")}))
    excluded = check(rowset, "NIfTI excluded by .bidsignore")
    assert excluded.severity == "info" and excluded.actual == len(ignored)
    assert f"{len(ignored)} NIfTI excluded by .bidsignore: not published" in excluded.details
    assert "lesion_masks" not in check(rowset, "every NIfTI claimed by a column").details
    # An entity query does not reach them; a glob does.
    by_entity = assemble_rows(index, Schema(columns={"t1w": many(suffix="T1w"),
                                                     "lesion": one(pipeline="lesion_masks",
                                                                   suffix="mask")}))
    assert by_entity.column_files("lesion") == 0
    by_glob = assemble_rows(index, Schema(columns={
        "t1w": many(suffix="T1w"), "lesion": one("derivatives/lesion_masks/anat/*_mask.nii.gz")}))
    assert by_glob.column_files("lesion") == len(ignored)
    details = check(rowset, "every NIfTI claimed by a column").details
    assert "have non-BIDS names; a glob column can claim them: sub-M2001/extra/T1_copy.nii.gz" \
        in details
    assert "outside any sub-* folder, so no row can hold them: " \
           "derivatives/templates/mni.nii.gz" in details
    claimed = assemble_rows(index, Schema(columns={"t1w": many(suffix="T1w"),
                                                   "extra": one("extra/*.nii.gz")}))
    assert claimed.column_files("extra") == 1


def test_datalad_symlinks_are_kept_and_missing_content_is_named(arc_tree: Path,
                                                                tmp_path: Path) -> None:
    """A git-annex tree: every image is a symlink into .git/annex; paths stay as linked."""
    root = tmp_path / "annexed"
    shutil.copytree(arc_tree, root)
    annex = root / ".git" / "annex" / "objects"
    annex.mkdir(parents=True)
    images = sorted(root.rglob("*.nii.gz"))
    for i, image in enumerate(images):
        target = annex / f"MD5E-{i}.nii.gz"
        image.rename(target)
        image.symlink_to(Path("/".join([".."] * (len(image.relative_to(root).parts) - 1)))
                         / target.relative_to(root))
    staged = run_pipeline(root, load_schema("arc"), tmp_path / "out")
    stored = {f.path for r in staged.rowset.rows for _, f in r.files()}
    assert stored == {p.relative_to(root).as_posix() for p in images}
    (annex / "MD5E-0.nii.gz").unlink()  # content not fetched
    rowset = assemble_rows(index_bids(root), load_schema("arc"))
    unreadable = check(rowset, "claimed files readable")
    assert unreadable.blocking and "datalad get" in unreadable.details
    assert images[0].relative_to(root).as_posix() in unreadable.details


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


@pytest.mark.parametrize(("name", "tree"), [("arc", "arc_tree"), ("isles24", "isles_tree"),
                                            ("aomic_piop1", "aomic_tree")])
def test_reference_schemas_stage_and_verify_on_their_cohorts(
        name: str, tree: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from bids_hf import Manifest, verify_staged

    assert len((SCHEMAS / f"{name}.py").read_text().splitlines()) <= 40
    root = request.getfixturevalue(tree)
    staged = run_pipeline(root, load_schema(name), tmp_path / name)  # checks, builds, verifies
    assert staged.rowset.unclaimed == []
    result = run_checks(staged.rowset, Options())
    assert result.all_passed, result.summary()
    verified = verify_staged(staged.out, staged.rowset, staged.plan, Manifest.read(staged.out),
                             rehash=True)
    assert verified.all_passed, verified.summary()
