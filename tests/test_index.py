"""The index: .bidsignore honoured, non-BIDS names and files outside subject folders still
found, DataLad/git-annex symlinks kept as linked and unfetched content named."""

from __future__ import annotations

import shutil
from pathlib import Path

from bids_hf import Schema, index_bids, many, one
from bids_hf._rows import assemble_rows
from bids_hf.testing import write_nifti
from conftest import check, load_schema, run_pipeline


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
