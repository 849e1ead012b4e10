"""Real BIDS layouts from bids-examples: each indexes, gets an inferred schema, and — after
its empty NIfTIs are replaced by tiny valid images in a temporary copy — stages and loads
back with every claimed file intact and nothing unclaimed. Unmodified trees (0-byte or
header-only images) get a clear error before anything is built. Skipped when the shared
bids-examples are not available."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import pytest
from bids_hf import (
    Manifest,
    Options,
    check,
    check_images,
    collect,
    index_bids,
    infer_schema,
    verify_staged,
)
from bids_hf.testing import check_nifti, write_nifti
from conftest import BIDS_EXAMPLES, bids_example, run_pipeline

NAMES = ["7t_trt", "ds000001-fmriprep", "ds001", "ds005", "ds114", "dwi_deriv",
         "qmri_mp2rage", "synthetic"]


def schema_of(root: Path):
    namespace: dict = {}
    exec(infer_schema(index_bids(root)), namespace)  # noqa: S102  (running the generated schema.py is the test)
    return namespace["SCHEMA"]


def filled_copy(name: str, tmp_path: Path) -> Path:
    root = Path(shutil.copytree(bids_example(name), tmp_path / name, symlinks=True))
    for image in root.rglob("*.nii*"):
        # Most bids-examples images are 0 bytes; "synthetic" holds header-only images.
        if image.stat().st_size == 0 or check_nifti(str(image)) is not None:
            image.unlink()
            write_nifti(image, (6, 6, 4))
    return root


def test_the_expected_examples_are_there() -> None:
    if not BIDS_EXAMPLES.is_dir():
        pytest.skip("bids-examples not available")
    assert sorted(p.name for p in BIDS_EXAMPLES.iterdir() if p.is_dir()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_example_infers_stages_and_loads_back_intact(name: str, tmp_path: Path) -> None:
    root = filled_copy(name, tmp_path)
    schema = schema_of(root)
    staged = run_pipeline(root, schema, tmp_path / "out")  # checks, builds, verifies
    assert staged.rowset.unclaimed == []
    assert staged.rowset.claimed.keys() == set(index_bids(root).nifti_on_disk)
    checks = check(staged.rowset, Options())
    assert checks.all_passed, checks.summary()
    verification = verify_staged(staged.out, staged.rowset, staged.plan,
                                 Manifest.read(staged.out), rehash=True)
    assert verification.all_passed, verification.summary()
    ds = datasets.load_dataset(str(staged.out), split="train")
    assert len(ds) == len(staged.rowset.rows)


@pytest.mark.parametrize("name", ["ds001", "7t_trt"])
def test_unmodified_example_fails_with_an_empty_image_error(name: str) -> None:
    root = bids_example(name)
    rowset = collect(root, schema_of(root))
    empty = next(c for c in check(rowset, Options()).checks if c.name == "no empty images")
    assert empty.blocking
    assert "are 0 bytes" in empty.details and ".nii" in empty.details


def test_header_only_images_fail_the_integrity_check() -> None:
    """bids-examples' "synthetic" images are 352-byte headers promising 256^3 voxels."""
    root = bids_example("synthetic")
    rowset = collect(root, schema_of(root))
    integrity = next(c for c in check_images(rowset, Options()).checks
                     if c.name.startswith("images intact"))
    assert integrity.blocking and integrity.actual == 0
    assert "truncated, 352 bytes of image data where the header promises" in integrity.details
