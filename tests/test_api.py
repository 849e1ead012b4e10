"""The notebook front door: BidsDataset.from_bids() and its push_to_hub(), same pipeline as
push.py — the obvious ``ds.push_to_hub("org/x")`` is the safe one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
import nibabel as nib
import pytest
from bids_hf import BidsDataset, ChecksFailed, InputError, from_bids, many, one, push_to_hub
from hub_fixtures import HubEnv
from huggingface_hub import HfApi, hf_hub_download

SCHEMA = {"t1w": many("anat/*_T1w.nii.gz"),
          "lesion": "derivatives/lesion_masks/*_mask.nii.gz"}


def test_from_bids_gives_a_lazy_dataset_with_typed_metadata(arc_tree: Path) -> None:
    ds = from_bids(arc_tree, schema=SCHEMA, metadata_from="participants.tsv")
    assert ds.features["t1w"] == datasets.List(datasets.Nifti())
    assert ds.features["lesion"] == datasets.Nifti()
    assert ds.features["age_at_stroke"] == datasets.Value("int64")
    assert ds.features["wab_aq"] == datasets.Value("float64")
    assert "None" in ds["wab_type"] and None in ds["wab_type"]
    row = next(r for r in ds if r["lesion"] is not None)
    assert isinstance(row["t1w"][0], nib.Nifti1Image) and row["lesion"].shape == (10, 10, 8)


def test_from_bids_refuses_an_ambiguous_column_naming_the_files(arc_tree: Path) -> None:
    with pytest.raises(ChecksFailed, match=r"(?s)matched 2 files in sub-.*run-1_T1w.*run-2_T1w"):
        from_bids(arc_tree, schema={"t1w": one("anat/*_T1w.nii.gz")})


def test_the_obvious_push_to_hub_is_the_checked_one_and_stores_bids_paths(
        arc_tree: Path, tmp_path: Path, hub_env: HubEnv) -> None:
    ds = BidsDataset.from_bids(arc_tree, schema=SCHEMA, metadata_from="participants.tsv")
    assert isinstance(ds, datasets.Dataset) and len(ds) > 0
    result = ds.push_to_hub("test-org/api", out=tmp_path / "staged", max_shard_size="40KB",
                            progress=False, bids_validator=False)
    assert result.private and result.commit and len(result.uploaded) > 2
    assert HfApi().dataset_info("test-org/api").private is True
    hub = datasets.load_dataset("test-org/api", split="train")
    hub = hub.cast_column("t1w", datasets.List(datasets.Nifti(decode=False)))
    for row in hub:
        for cell in row["t1w"]:
            assert not cell["path"].startswith("/") and cell["path"].startswith("sub-")
            assert hashlib.sha256(cell["bytes"]).digest() == hashlib.sha256(
                (arc_tree / cell["path"]).read_bytes()).digest()
    again = push_to_hub(ds, "test-org/api", out=tmp_path / "staged", max_shard_size="40KB",
                        progress=False, bids_validator=False)
    assert again.commit is None and not again.uploaded  # resumable, nothing left to send


def test_push_to_hub_takes_the_cards_prose_and_warns_without_it(
        arc_tree: Path, tmp_path: Path, hub_env: HubEnv,
        caplog: pytest.LogCaptureFixture) -> None:
    ds = BidsDataset.from_bids(arc_tree, schema=SCHEMA)
    settings = {"out": tmp_path / "staged", "progress": False, "bids_validator": False}
    ds.push_to_hub("test-org/prose", **settings)
    assert any("the dataset card still says" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")
    caplog.clear()
    prose = "# Stroke cohort\n\nT1w and lesion masks of people with aphasia after a stroke.\n"
    ds.push_to_hub("test-org/prose", card=prose, **settings)
    assert not any("still says" in r.getMessage() for r in caplog.records)
    card = Path(hf_hub_download("test-org/prose", "README.md", repo_type="dataset")).read_text()
    # Prose without markers keeps its words, and the generated blocks follow it.
    assert "lesion masks of people with aphasia" in card
    assert "load_dataset(" in card and "<!-- bids-hf:begin columns -->" in card
    assert card.index("people with aphasia") < card.index("<!-- bids-hf:begin summary -->")


def test_push_to_hub_refuses_a_changed_dataset(arc_tree: Path) -> None:
    ds = from_bids(arc_tree, schema=SCHEMA)
    renamed = ds.rename_column("lesion", "mask")  # still a BidsDataset, other content
    assert isinstance(renamed, BidsDataset)
    with pytest.raises(InputError, match="Express the change in the schema"):
        renamed.push_to_hub("test-org/x")
    with pytest.raises(InputError, match="Express the change in the schema"):
        push_to_hub(ds.filter(lambda r: r["subject_id"] != "sub-M2001"), "test-org/x")
    with pytest.raises(InputError, match="num_shards"):
        ds.push_to_hub("test-org/x", num_shards=3)


def test_the_public_api_is_what_the_package_exports() -> None:
    import bids_hf

    assert [n for n in bids_hf.__all__ if not hasattr(bids_hf, n)] == []
    assert not any(n.startswith("write_") for n in bids_hf.__all__), "test helpers: bids_hf.testing"
