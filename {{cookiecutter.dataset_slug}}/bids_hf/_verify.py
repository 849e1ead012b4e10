"""Verification of a staged folder, before anything is uploaded.

Checks, each a ``ValidationCheck``:

* every file in the manifest exists with its recorded size and sha256 (re-hashed, so a
  shard reused from an earlier run is checked too) and ``data/`` holds nothing else;
* ``datasets.load_dataset(STAGED_DIR, streaming=True)`` reads it through the card's YAML,
  with exactly the planned features, and decodes the first row's images;
* every row is where the plan put it, and every embedded image has the BIDS-relative path
  and the sha256 of its source file. Shards are read one row group at a time and hashed
  from Arrow buffers, so memory stays bounded by a row group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._plan import ShardPlan
from ._rows import RowSet, row_ids
from ._shards import forget_shard
from ._stage import Manifest
from ._util import sha256_file, summarize_paths
from ._validate import ValidationCheck, ValidationResult


def verify_staged(out: Path, rowset: RowSet, plan: ShardPlan, manifest: Manifest) -> ValidationResult:
    result = ValidationResult()
    result.add(_files_match_manifest(out, manifest))
    result.add(_row_counts(out, rowset, plan))
    result.add(_load_with_datasets(out, rowset))
    result.add(_embedded_bytes(out, rowset, plan))
    return result


def _files_match_manifest(out: Path, manifest: Manifest) -> ValidationCheck:
    problems: list[str] = []
    for name, entry in manifest.files.items():
        path = out / name
        if not path.is_file():
            problem = f"{name}: missing"
        elif path.stat().st_size != entry["size"]:
            problem = f"{name}: {path.stat().st_size} bytes, manifest says {entry['size']}"
        elif sha256_file(path) != entry["sha256"]:
            problem = f"{name}: sha256 differs from the manifest (file changed or corrupt)"
        else:
            continue
        problems.append(problem)
        forget_shard(out, name)  # so that the rerun rebuilds it instead of trusting it
    extra = sorted(f"data/{p.name}" for p in (out / "data").iterdir()
                   if f"data/{p.name}" not in manifest.files)
    if extra:
        problems.append(f"not in the manifest, would be uploaded and loaded: {summarize_paths(extra)}")
    return ValidationCheck(
        name="staged files match manifest", expected=len(manifest.files),
        actual=len(manifest.files) - len(problems), passed=not problems,
        details="\n".join(problems) + ("\nRestage (rerun push.py) to rebuild them." if problems else ""),
    )


def _row_counts(out: Path, rowset: RowSet, plan: ShardPlan) -> ValidationCheck:
    """Rows per split in the Parquet footers, against the rows assembled from the tree."""
    stored: dict[str, int] = dict.fromkeys(rowset.splits, 0)
    for spec in plan.shards:
        path = out / spec.name
        if path.is_file():
            stored[spec.split] += pq.ParquetFile(path).metadata.num_rows
    planned = {s: len(rowset.rows_of(s)) for s in rowset.splits}
    wrong = [f"{s}: {stored[s]} rows stored, {planned[s]} planned" for s in planned
             if stored[s] != planned[s]]
    return ValidationCheck(name="rows as planned", expected=sum(planned.values()),
                           actual=sum(stored.values()), passed=not wrong,
                           details="\n".join(wrong))


def _load_with_datasets(out: Path, rowset: RowSet) -> ValidationCheck:
    problems: list[str] = []
    for split in rowset.splits:
        try:
            ds = datasets.load_dataset(str(out), split=split, streaming=True)
            if ds.features != rowset.features:
                problems.append(f"{split}: features differ from the plan:\n  loaded  {ds.features}\n"
                                f"  planned {rowset.features}")
                continue
            first = next(iter(ds))
            for column, is_list in rowset.image_columns.items():
                value = first[column]
                images = value if is_list else ([value] if value is not None else [])
                for img in images:
                    img.header.get_data_shape()  # decoded into a nibabel image
        except Exception as err:  # noqa: BLE001  (the failure is the finding)
            problems.append(f"{split}: load_dataset failed: {type(err).__name__}: {err}")
    return ValidationCheck(
        name="datasets loads staged folder", expected="planned features",
        actual="ok" if not problems else "failed", passed=not problems,
        details="\n".join(problems),
    )


def _embedded_bytes(out: Path, rowset: RowSet, plan: ShardPlan) -> ValidationCheck:
    problems: list[str] = []
    checked = 0
    source_hashes: dict[str, str] = {}
    for spec in plan.shards:
        pf = pq.ParquetFile(out / spec.name)
        if pf.metadata.num_row_groups != len(spec.row_groups):
            problems.append(f"{spec.name}: {pf.metadata.num_row_groups} row groups, planned "
                            f"{len(spec.row_groups)}")
            continue
        id_columns = [c for c in ("subject_id", "session_id") if c in rowset.features]
        for g, group in enumerate(spec.row_groups):
            table = pf.read_row_group(g, columns=[*id_columns, *rowset.image_columns])
            if table.num_rows != len(group):
                problems.append(f"{spec.name} row group {g}: {table.num_rows} rows, planned {len(group)}")
                continue
            ids = {c: table.column(c).to_pylist() for c in id_columns}
            for pos, i in enumerate(group):
                row = rowset.rows[i]
                want = row_ids(row, rowset.schema.row)
                got = {c: ids[c][pos] for c in id_columns}
                if got != want:
                    problems.append(f"{spec.name}: row {pos} of group {g} is {got}, planned {want}")
            for column, is_list in rowset.image_columns.items():
                array = table.column(column).combine_chunks()
                stored: dict[int, list[tuple[str, str]]] = {}
                for pos, item in zip(_positions(array, is_list), _blobs(array, is_list),
                                     strict=True):
                    stored.setdefault(pos, []).append(item)
                for pos, i in enumerate(group):
                    row = rowset.rows[i]
                    planned = row.images.get(column, [])
                    items = stored.get(pos, [])
                    if [p for p, _ in items] != [f.path for f in planned]:
                        problems.append(f"{row.key} {column}: stored {[p for p, _ in items]}, "
                                        f"planned {[f.path for f in planned]}")
                        continue
                    for (path, digest), src in zip(items, planned, strict=True):
                        if src.path not in source_hashes:
                            source_hashes[src.path] = sha256_file(rowset.index.root / src.path)
                        if digest != source_hashes[src.path]:
                            problems.append(f"{path}: embedded bytes differ from the source file")
                        checked += 1
            del table
    expected_total = sum(len(files) for r in rowset.rows for files in r.images.values())
    if checked != expected_total and not problems:
        problems.append(f"checked {checked} embedded images, the rows hold {expected_total}")
    return ValidationCheck(
        name="embedded images equal sources (sha256)", expected=expected_total, actual=checked,
        passed=not problems,
        details="\n".join(problems[:20]) + (f"\n... {len(problems) - 20} more" if len(problems) > 20 else ""),
    )


def _positions(array: pa.Array, is_list: bool) -> Iterator[int]:
    """The row position of every stored image, in storage order."""
    if not is_list:
        nulls = array.is_null().to_numpy(zero_copy_only=False)
        yield from (int(i) for i in np.flatnonzero(~nulls))
        return
    lengths = array.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    for row, n in enumerate(lengths):
        for _ in range(int(n)):
            yield row


def _blobs(array: pa.Array, is_list: bool) -> Iterator[tuple[str, str]]:
    """(stored path, sha256 of stored bytes) of every non-null image, hashing Arrow buffers."""
    structs = array.flatten() if is_list else array.filter(array.is_valid())
    blobs, paths = structs.flatten()  # offset-aware children: bytes, path
    offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[blobs.offset: blobs.offset + len(blobs) + 1]
    data = blobs.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    for k, path in enumerate(paths.to_pylist()):
        yield path, hashlib.sha256(view[offsets[k]:offsets[k + 1]]).hexdigest()
