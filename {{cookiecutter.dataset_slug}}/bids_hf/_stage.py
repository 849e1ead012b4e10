"""Staging: the folder that is uploaded as is — ``data/*.parquet``, ``README.md``, extras.

The staged folder is the "embedded default": ``datasets.load_dataset(STAGED_DIR)`` loads it
exactly as the Hub copy would. Beside it, ``.bids_hf/`` holds the state that is never
uploaded: who the folder belongs to (a staging folder is per dataset, never shared), the
per-shard records that make builds resumable, the plan, and ``manifest.json`` (sizes and
sha256 of every file to upload), which both local and remote verification check against.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ._card import CardMeta, StagedStats, render_card
from ._plan import ShardPlan
from ._qc import write_qc_picture
from ._rows import RowSet
from ._shards import STATE_DIR, ShardRecord, build_shards
from ._util import sha256_file
from ._version import __version__

MANIFEST = "manifest.json"
_IDENTITY = "staging.json"


class StagingError(RuntimeError):
    """The output folder cannot be used for this dataset (another dataset's, or half-built)."""


@dataclass(frozen=True)
class Manifest:
    """Everything that will be uploaded, with sizes and hashes, plus what the plan was."""

    dataset: str
    bids_hf_version: str
    plan_fingerprint: str
    splits: dict[str, dict[str, int]]
    shards: list[dict[str, Any]]
    files: dict[str, dict[str, Any]]  # every uploaded file (shards included) -> size, sha256

    @property
    def shard_names(self) -> list[str]:
        return [s["name"] for s in self.shards]

    @classmethod
    def read(cls, out: Path) -> Manifest:
        path = out / STATE_DIR / MANIFEST
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as err:
            raise StagingError(f"No readable manifest in {out} ({err}). Stage it first "
                               "(push.py --bids-root ... --out ...).") from err

    def write(self, out: Path) -> None:
        path = out / STATE_DIR / MANIFEST
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(tmp, path)


def claim_staging_dir(out: Path, dataset: str) -> None:
    """Mark ``out`` as this dataset's staging folder, refusing one that belongs to another."""
    state = out / STATE_DIR
    ident = state / _IDENTITY
    if ident.exists():
        owner = json.loads(ident.read_text(encoding="utf-8")).get("dataset")
        if owner != dataset:
            raise StagingError(
                f"{out} is the staging folder of dataset {owner!r}, not {dataset!r}. Use a "
                "separate --out for each dataset."
            )
        return
    if out.exists() and any(p.name != STATE_DIR for p in out.iterdir()):
        raise StagingError(
            f"{out} already exists and is not a staging folder. Choose an empty or new --out."
        )
    state.mkdir(parents=True, exist_ok=True)
    ident.write_text(json.dumps({"dataset": dataset}) + "\n", encoding="utf-8")


def stage(
    rowset: RowSet,
    plan: ShardPlan,
    out: Path,
    meta: CardMeta,
    *,
    card_source: str | None = None,
    num_proc: int = 1,
    progress: bool = True,
    qc: bool = True,
) -> Manifest:
    """Build every shard (reusing valid ones), drop stale ones, write the QC picture, the
    card and the manifest."""
    claim_staging_dir(out, meta.slug)
    (out / STATE_DIR / "plan.json").write_text(plan.to_json(), encoding="utf-8")
    records = build_shards(rowset, plan, out, num_proc=num_proc, progress=progress)
    _remove_stale(out, set(records))
    stats = _stats(out, records, plan, rowset)
    blocks: dict[str, str] = {}
    if qc and (picture := write_qc_picture(rowset, out)) is not None:
        blocks["qc"] = picture.card_block()
    (out / "README.md").write_text(
        render_card(rowset, meta, stats, source=card_source, extra_blocks=blocks), encoding="utf-8")
    files = {name: {"size": r.size, "sha256": r.sha256} for name, r in records.items()}
    for extra in sorted(_uploadable_extras(out)):
        files[extra] = {"size": (out / extra).stat().st_size, "sha256": sha256_file(out / extra)}
    manifest = Manifest(
        dataset=meta.slug,
        bids_hf_version=__version__,
        plan_fingerprint=plan.fingerprint,
        splits={s: {"num_examples": stats.num_examples[s], "num_bytes": stats.num_bytes[s]}
                for s in rowset.splits},
        shards=[asdict(records[s.name]) for s in plan.shards],
        files=files,
    )
    manifest.write(out)
    return manifest


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Shards of an older plan would be loaded by the ``data/<split>-*`` pattern: remove them."""
    for path in (out / "data").iterdir():
        rel = f"data/{path.name}"
        if rel in keep:
            continue
        if path.name.endswith(".parquet") or path.name.endswith(".tmp"):
            path.unlink()
    for record in (out / STATE_DIR / "shards").glob("*.json"):
        if f"data/{record.stem}.parquet" not in keep:
            record.unlink()


def _uploadable_extras(out: Path) -> list[str]:
    """Files other than shards that belong on the Hub: the card and anything beside it."""
    return [p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")]


def _stats(out: Path, records: Mapping[str, ShardRecord], plan: ShardPlan,
           rowset: RowSet) -> StagedStats:
    stats = StagedStats(shards=len(records))
    for split in rowset.splits:
        stats.num_examples[split] = 0
        stats.num_bytes[split] = 0
    for spec in plan.shards:
        meta = pq.ParquetFile(out / spec.name).metadata
        stats.num_examples[spec.split] += meta.num_rows
        # Uncompressed in-memory size, as datasets reports num_bytes.
        stats.num_bytes[spec.split] += sum(meta.row_group(i).total_byte_size
                                           for i in range(meta.num_row_groups))
        stats.download_size += records[spec.name].size
    return stats
