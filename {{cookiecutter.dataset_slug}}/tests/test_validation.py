"""Validation tests of this dataset repo.

Structure tests always run: a small synthetic replica is built from schema.py, then checked,
staged, verified and loaded back exactly as push.py would do with the real tree. Data tests
run when BIDS_ROOT points at the real dataset (skipped otherwise, with the reason shown): its
counts match schema.py's expectations, the privacy decisions in schema.py cover every
finding, every image is intact, and no image is left unclaimed in strict mode.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import push
import pytest
from bids_hf import Expected, Options, check, check_images, collect, load_staged, stage
from bids_hf.testing import write_replica

BUILDER = push.load_builder()
# The replica has its own counts; the expectations in schema.py are for the real data.
STRUCTURE_SCHEMA = dataclasses.replace(BUILDER.SCHEMA, expected=Expected())
OPTIONS = Options(max_shard_size="200KB", progress=False, bids_validator=False)
BIDS_ROOT = os.environ.get("BIDS_ROOT")
needs_real_data = pytest.mark.skipif(
    not BIDS_ROOT, reason="set BIDS_ROOT=/path/to/bids to check the real dataset")


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_replica(STRUCTURE_SCHEMA, tmp_path_factory.mktemp("replica") / "bids")


def test_schema_applies_to_replica(replica: Path) -> None:
    rowset = collect(replica, STRUCTURE_SCHEMA)
    result = check(rowset, OPTIONS)
    assert result.all_passed, result.summary()
    for column in rowset.image_columns:
        assert rowset.column_files(column) > 0, f"column {column} matched no replica file"


def test_replica_stages_verifies_and_loads(replica: Path, tmp_path: Path) -> None:
    rowset = collect(replica, STRUCTURE_SCHEMA)
    out = tmp_path / "staged"
    staged = stage(rowset, out, BUILDER.card_meta(), OPTIONS)
    assert staged.ok, staged.checks.summary() + "\n" + staged.verification.summary()
    split = rowset.splits[0]
    # Cached under the manifest's hash: datasets could otherwise return an earlier build of a
    # folder with the same name and card (see the template's upstream/ notes).
    ds = load_staged(out, split=split)
    assert ds.features == rowset.features
    assert len(ds) == len(rowset.rows_of(split))
    first = ds[0]
    for column, is_list in rowset.image_columns.items():
        images = first[column] if is_list else [first[column]]
        for img in images:
            assert img.get_fdata().ndim >= 3


def test_builder_generates_replica(replica: Path, tmp_path: Path) -> None:
    builder = BUILDER(data_dir=str(replica), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    split = builder.rowset().splits[0]
    ds = builder.as_dataset(split=split)
    assert len(ds) == len(builder.rowset().rows_of(split))


@needs_real_data
def test_real_data_matches_schema() -> None:
    options = Options(progress=False)
    rowset = collect(BIDS_ROOT, BUILDER.SCHEMA)  # type: ignore[arg-type]
    result = check(rowset, options)
    result.extend(check_images(rowset, options).checks)
    assert result.all_passed, result.summary()
