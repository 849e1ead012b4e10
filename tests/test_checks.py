"""Publish only what was checked. Bad input found by the cheap checks stops push.py before
anything is built; bad images are found in the single pass that builds the shards, and then
nothing is marked verified and their shards are not kept. Every message names the file.
Personal information is judged by what will be published, and decided per field."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from bids_hf import Options, check, collect
from bids_hf.testing import write_nifti
from conftest import load_schema, run_push


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
    text = text.replace("SCHEMA = Schema(",
                        "SCHEMA = Schema(\n    expected=Expected(files={'t1w': 999}),")
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


def make_patient_name_unpublished(root: Path) -> str:
    """In a T1w sidecar: the ARC schema publishes no T1w sidecar, so it stays here."""
    sidecar = first(root, "*_T1w.nii.gz").with_name(
        first(root, "*_T1w.nii.gz").name.replace(".nii.gz", ".json"))
    sidecar.write_text(json.dumps({"PatientName": "DOE^JANE", "EchoTime": 0.003}))
    return sidecar.relative_to(root).as_posix()


def make_outside_link(root: Path) -> str:
    """A claimed image that is a symbolic link to a file outside the dataset."""
    image = first(root, "*_T1w.nii.gz")
    elsewhere = root.parent / "elsewhere.nii.gz"
    elsewhere.write_bytes(image.read_bytes())
    image.unlink()
    image.symlink_to(elsewhere)
    return image.relative_to(root).as_posix()


# Found before anything is built.
BAD_INPUTS = {
    "empty image": (make_empty, "are 0 bytes"),
    "PatientName in a published sidecar": (make_patient_name, "key 'PatientName'"),
    "a link that leaves the dataset": (make_outside_link, "elsewhere.nii.gz"),
}
# Found while the shards are built, in the one pass over the images.
BAD_IMAGES = {
    "truncated gzip": (make_truncated, "truncated or corrupt"),
    "not a NIfTI": (make_not_nifti, "not a NIfTI file"),
    "a name in descrip": (make_named_descrip,
                          "header descrip: 'Scan of Jane Doe' contains what reads like a name"),
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


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_is_found_in_the_build_and_nothing_is_verified(
        case: str, arc_repo: Path, arc_copy: Path, tmp_path: Path) -> None:
    spoil, message = BAD_IMAGES[case]
    named = spoil(arc_copy)
    out = tmp_path / "staged"
    done = push(arc_repo, arc_copy, out)
    assert done.returncode == 1, done.stderr
    assert named in done.stderr and message in done.stderr
    assert "nothing was marked verified or uploaded" in done.stderr
    assert not (out / ".bids_hf" / "verified.json").exists()
    assert not (out / "README.md").exists() and not (out / ".bids_hf" / "manifest.json").exists()
    records = [json.loads(p.read_text()) for p in (out / ".bids_hf" / "shards").glob("*.json")]
    kept = {name for r in records for name in r["sources"]}
    assert named not in kept, "the shard holding the bad image was kept"
    assert len(list((out / "data").glob("*.parquet"))) == len(records)


def test_etc_passwd_linked_as_an_image_never_reaches_a_shard(arc_repo: Path, arc_copy: Path,
                                                             tmp_path: Path) -> None:
    image = first(arc_copy, "*_T1w.nii.gz")
    image.unlink()
    image.symlink_to("/etc/passwd")
    rel = image.relative_to(arc_copy).as_posix()
    out = tmp_path / "staged"
    done = push(arc_repo, arc_copy, out, "--no-integrity")
    assert done.returncode == 1 and f"{rel} -> /etc/passwd" in done.stderr
    assert "nothing was built" in done.stderr
    # Allowed to link there, it is still not an image: the header check runs regardless.
    schema = arc_repo / "schema.py"
    schema.write_text(schema.read_text().replace("SCHEMA = Schema(",
                                                 "SCHEMA = Schema(\n    allow_outside=['/etc'],"))
    done = push(arc_repo, arc_copy, out, "--no-integrity")
    assert done.returncode == 1, done.stderr
    assert f"{rel}: named .gz but not gzip-compressed" in done.stderr
    for shard in (out / "data").glob("*.parquet"):
        assert b"root:" not in shard.read_bytes()


def test_a_link_into_the_annex_object_store_is_fine(arc_tree: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(arc_tree, tmp_path / "ds"))
    image = first(root, "*_T1w.nii.gz")
    store = root / ".git" / "annex" / "objects" / "Xx" / "Yy" / "SHA256E-s1--abc.nii.gz"
    store.parent.mkdir(parents=True)
    image.rename(store)
    image.symlink_to(os.path.relpath(store, image.parent))
    result = check(collect(root, load_schema("arc")), Options())
    inside = next(c for c in result.checks if c.name == "claimed files inside the dataset")
    assert inside.passed, inside.details


def test_unpublished_sidecar_finding_is_a_note(arc_repo: Path, arc_copy: Path,
                                               tmp_path: Path) -> None:
    named = make_patient_name_unpublished(arc_copy)
    done = push(arc_repo, arc_copy, tmp_path / "staged")
    assert done.returncode == 0, done.stderr
    assert re.search(r"note\s+fields in files that are not published\s+-\s+1", done.stderr)
    assert f"PatientName: 1 file(s) not published, e.g. {named}" in done.stderr


def test_privacy_decisions_drop_and_allow_fields(arc_repo: Path, arc_copy: Path,
                                                 tmp_path: Path) -> None:
    """AcquisitionTime dropped from published sidecars (the source untouched), a site field
    allowed with a reason: the run passes with no warning, and the card says so."""
    sidecar = first(arc_copy, "*_bold.json")
    data = json.loads(sidecar.read_text())
    data.update({"AcquisitionTime": "10:15:30.5", "InstitutionAddress": "1 Main St, Town"})
    sidecar.write_text(json.dumps(data))
    before = push(arc_repo, arc_copy, tmp_path / "before")
    assert before.returncode == 1
    assert "key 'AcquisitionTime': identity, date or time field" in before.stderr
    assert re.search(r"warn\s+no site-identifying fields published", before.stderr)
    schema = arc_repo / "schema.py"
    schema.write_text("from bids_hf import Privacy\n" + schema.read_text().replace(
        "SCHEMA = Schema(", "SCHEMA = Schema(\n    privacy=Privacy(drop=['AcquisitionTime'], "
        "allow={'InstitutionAddress': 'the hospital is named in the paper'}),"))
    out = tmp_path / "staged"
    done = push(arc_repo, arc_copy, out)
    assert done.returncode == 0, done.stderr
    assert "warn" not in done.stderr.split("plan:")[0]
    assert re.search(r"ok\s+reviewed fields published as decided\s+-\s+1", done.stderr)
    texts = [t for f in (out / "data").glob("*.parquet")
             for column in pq.read_table(f).column_names if column.endswith("_sidecar")
             for cell in pq.read_table(f, columns=[column]).column(0).to_pylist()
             for t in (cell if isinstance(cell, list) else [cell]) if t]
    assert texts and not any("AcquisitionTime" in t for t in texts)
    assert any("InstitutionAddress" in t for t in texts)
    assert "AcquisitionTime" in sidecar.read_text(), "the source must stay untouched"
    card = (out / "README.md").read_text()
    assert "AcquisitionTime" in card and "the hospital is named in the paper" in card


def test_count_mismatch_stops_before_anything_is_built(arc_repo: Path, arc_tree: Path,
                                                       tmp_path: Path) -> None:
    message = make_count_mismatch(arc_repo)
    out = tmp_path / "staged"
    done = push(arc_repo, arc_tree, out)
    assert done.returncode == 1
    assert re.search(r"FAIL\s+files in t1w", done.stderr) and message in done.stderr
    assert not (out / "data").exists()


def test_allow_phi_reports_but_does_not_block(arc_repo: Path, arc_copy: Path,
                                              tmp_path: Path) -> None:
    named = make_patient_name(arc_copy)
    done = push(arc_repo, arc_copy, tmp_path / "staged", "--allow-phi")
    assert done.returncode == 0, done.stderr
    assert re.search(r"warn\s+no personal information published", done.stderr)
    assert f"{named}: key 'PatientName'" in done.stderr
    assert "--allow-phi (allow_phi=True) given: reported, not blocking" in done.stderr


def test_checks_pass_on_a_clean_tree(arc_tree: Path) -> None:
    result = check(collect(arc_tree, load_schema("arc")), Options())
    assert result.all_passed, result.summary()
    names = {c.name for c in result.checks}
    assert {"no personal information published", "no empty images", "required files",
            "claimed files inside the dataset"} <= names
