"""The schema language: pybids and short entity names alike, globs and entity queries over raw
data and derivatives, renamed metadata columns, and the reference schemas end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from bids_hf import Options, Schema, SchemaError, index_bids, many, meta, one
from bids_hf import check as run_checks
from bids_hf._rows import assemble_rows
from conftest import SCHEMAS, check, load_schema, run_pipeline


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


def test_metadata_columns_can_be_renamed() -> None:
    with pytest.raises(SchemaError, match="clash with image or id columns"):
        Schema(columns={"t1w": one(suffix="T1w")},
               metadata={"participants.tsv": {"subject_id": "string"}})
    schema = Schema(columns={"t1w": one(suffix="T1w")},
                    metadata={"participants.tsv": {"subject_id": meta("string", name="tsv_id")}})
    assert schema.metadata_columns() == {"tsv_id": "string"}


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
