"""Staging: the folder that is uploaded as is — ``data/*.parquet``, ``README.md``, ``qc.png``.

The staged folder is the "embedded default": ``datasets.load_dataset(STAGED_DIR)`` loads it
exactly as the Hub copy would. Once the shards are built (``_shards``), this module removes
shards of older plans, writes the QC picture and the card, and records the manifest: every
file to upload with its size and sha256, and the sha256 of every embedded source image
(``_state`` owns where these live under ``.bids_hf/``). Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow.parquet as pq

from ._card import CardMeta, StagedStats, render_card
from ._plan import ShardPlan
from ._qc import write_qc_picture
from ._rows import RowSet
from ._state import (
    Manifest,
    ShardRecord,
    mark_verified,
    no_space_is_an_error,
    recorded_shards,
    write_atomic,
)
from ._util import sha256_file
from ._version import __version__


def remove_stale(out: Path, keep: set[str]) -> list[str]:
    """Files of an older plan would be loaded by the ``data/<split>-*`` patterns: remove them
    (and their records, and config folders left empty). Returns what was removed."""
    removed: list[str] = []
    data = out / "data"
    if data.is_dir():
        for path in sorted(data.rglob("*")):
            rel = path.relative_to(out).as_posix()
            if rel not in keep and path.is_file() and path.name.endswith((".parquet", ".tmp")):
                path.unlink()
                removed.append(rel)
        for folder in sorted((p for p in data.iterdir() if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
    for name, record in recorded_shards(out).items():
        if name not in keep:
            record.unlink()
    return removed


def write_card_and_manifest(rowset: RowSet, plan: ShardPlan, out: Path, meta: CardMeta,
                            records: Mapping[str, ShardRecord], *,
                            card_source: str | None = None, qc: bool = True) -> Manifest:
    """The QC picture, the card and the manifest of a folder whose shards are all built."""
    stats = _stats(out, plan, rowset)
    config_stats = {c: _stats(out, plan, rowset, c) for c in rowset.schema.configs}
    blocks: dict[str, str] = {}
    if qc:
        with no_space_is_an_error(out):
            picture = write_qc_picture(rowset, out)
        if picture is not None:
            blocks["qc"] = picture.card_block()
    write_atomic(out / "README.md",
                 render_card(rowset, meta, stats, source=card_source, extra_blocks=blocks,
                             config_stats=config_stats))
    files = {name: {"size": f["size"], "sha256": f["sha256"]}
             for s in plan.shards for name, f in records[s.name].files.items()}
    for extra in sorted(uploadable_extras(out)):
        files[extra] = {"size": (out / extra).stat().st_size, "sha256": sha256_file(out / extra)}
    manifest = Manifest(
        dataset=meta.slug,
        bids_hf_version=__version__,
        plan_fingerprint=plan.fingerprint,
        splits={s: {"num_examples": stats.num_examples[s], "num_bytes": stats.num_bytes[s]}
                for s in rowset.splits},
        shards=[asdict(records[s.name]) for s in plan.shards],
        files=files,
        sources={p: h for s in plan.shards for p, h in records[s.name].sources.items()},
        repo_id=meta.repo_id,
        gated=meta.gated,
    )
    manifest.write(out)
    return manifest


def retarget_card(out: Path, repo_id: str) -> bool:
    """Make the staged card name ``repo_id`` (an upload to another repo than the one it was
    staged for): its usage code is the only place a repo id appears. The manifest and the
    verified marker follow. Returns whether anything changed."""
    manifest = Manifest.read(out)
    old = manifest.repo_id or f"<org>/{manifest.dataset}"
    if old == repo_id:
        return False
    card = out / "README.md"
    write_atomic(card, card.read_text(encoding="utf-8").replace(f'"{old}"', f'"{repo_id}"'))
    files = {**manifest.files, "README.md": {"size": card.stat().st_size,
                                             "sha256": sha256_file(card)}}
    replace(manifest, files=files, repo_id=repo_id).write(out)
    mark_verified(out)
    return True


def uploadable_extras(out: Path) -> list[str]:
    """Files other than shards that belong on the Hub: the card and anything beside it."""
    return [p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")]


def _stats(out: Path, plan: ShardPlan, rowset: RowSet, config: str | None = None
           ) -> StagedStats:
    """What the staged files of the full table (or of a config) hold, from their footers."""
    stats = StagedStats(shards=len(plan.shards))
    for split in rowset.splits:
        stats.num_examples[split] = 0
        stats.num_bytes[split] = 0
    for spec in plan.shards:
        path = out / (spec.name if config is None else spec.config_file(config))
        meta = pq.ParquetFile(path).metadata
        stats.num_examples[spec.split] += meta.num_rows
        # Uncompressed in-memory size, as datasets reports num_bytes.
        stats.num_bytes[spec.split] += sum(meta.row_group(i).total_byte_size
                                           for i in range(meta.num_row_groups))
        stats.download_size += path.stat().st_size
    return stats
