"""The shard plan: deterministic and bounded by the sizes asked for, and refused up front,
with the flag that fixes it, when a cell is too large for Arrow or the Hub's limits would
be crossed."""

from __future__ import annotations

from pathlib import Path

import pytest
from bids_hf import PlanError, Schema, collect, many
from bids_hf._index import BidsFile
from bids_hf._plan import plan_shards
from bids_hf._rows import Row, RowSet
from conftest import load_schema

SMALL = {"max_shard_size": "40KB", "row_group_size": "15KB"}


def test_plan_is_deterministic_and_bounded(arc_tree: Path) -> None:
    rowset = collect(arc_tree, load_schema("arc"))
    a, b = plan_shards(rowset, **SMALL), plan_shards(rowset, **SMALL)
    assert a == b and len(a.shards) > 2
    assert [s.name for s in a.shards] == [
        f"data/train-{i:05d}-of-{len(a.shards):05d}.parquet" for i in range(len(a.shards))]
    for spec in a.shards:
        assert spec.nbytes <= a.max_shard_size or len(spec.rows) == 1
        for group in spec.row_groups:
            size = sum(rowset.rows[i].nbytes for i in group)
            assert size <= a.row_group_size or len(group) == 1
    assert [i for s in a.shards for i in s.rows] == list(range(len(rowset.rows)))



def test_a_single_cell_over_two_gib_is_refused_with_a_clear_error() -> None:
    huge = BidsFile("sub-01/dwi/sub-01_run-1_dwi.nii.gz", None,
                    {"sub": "01", "suffix": "dwi", "ext": ".nii.gz"}, 2**31, 0)
    rowset = RowSet(
        schema=Schema(columns={"dwi": many(suffix="dwi")}), index=None,  # type: ignore[arg-type]
        rows=[Row("sub-01", "01", None, "train", {"dwi": [huge]}, {})],
        features=None, image_columns={"dwi": True})  # type: ignore[arg-type]
    with pytest.raises(PlanError, match=r"Row sub-01, column 'dwi'.*2 GiB"):
        plan_shards(rowset)


def test_a_plan_over_the_hubs_file_limit_is_refused(arc_tree: Path) -> None:
    rowset = collect(arc_tree, load_schema("arc"))
    rowset.rows = rowset.rows * 900  # ~10k rows of a few KB: one shard each at 1 byte
    with pytest.raises(PlanError, match="over the Hub's limit of 10,000 files in one folder"):
        plan_shards(rowset, max_shard_size=1)
    with pytest.raises(PlanError, match="above the 20 GB the Hub recommends"):
        plan_shards(collect(arc_tree, load_schema("arc")), max_shard_size="30GB")
