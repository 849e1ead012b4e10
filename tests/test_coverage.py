"""Coverage: a NIfTI that no column claims, or a column that claims nothing, is reported."""

from __future__ import annotations

from pathlib import Path

from bids_hf import Expected, Options, Schema, index_bids, many
from bids_hf import check as run_checks
from bids_hf._rows import assemble_rows
from conftest import check


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
