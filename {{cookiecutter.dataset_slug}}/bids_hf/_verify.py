"""Verification of a staged folder, before anything is uploaded.

The bytes were verified while the shards were built: every image was hashed as it was read,
and every shard was read back and its images compared with those hashes before it was kept
(a reused shard: the file and every source hashed again, see ``_commit``). What is left to
check here is cheap, and is about the folder as a whole:

* every file in the manifest exists with its recorded size (and the card and QC picture
  their sha256; ``rehash=True`` re-hashes the shards too), and ``data/`` holds nothing else;
* every image the rows claim is embedded, with the hash it was read with, in exactly one
  recorded shard;
* the row counts in the Parquet footers are the planned ones, in the full table's files and
  in each config's;
* ``datasets.load_dataset(STAGED_DIR, streaming=True)`` reads it through the card's YAML with
  exactly the planned features (each config with exactly its columns) and decodes an image
  of the first row (the smallest one, so a huge image cannot exhaust memory here).
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq

from ._plan import ShardPlan
from ._results import ValidationCheck, ValidationResult
from ._rows import RowSet, row_ids
from ._state import Manifest, forget_shard
from ._util import first_lines, sha256_file, shown, summarize_paths

# The first row's images are decoded only up to this size (decoding reads them into memory).
_DECODE_LIMIT = 64 << 20


def verify_staged(out: Path, rowset: RowSet, plan: ShardPlan, manifest: Manifest, *,
                  rehash: bool = False) -> ValidationResult:
    result = ValidationResult()
    result.add(_files_match_manifest(out, manifest, rehash))
    result.add(_every_image_embedded(rowset, plan, manifest))
    result.add(_row_counts(out, rowset, plan))
    result.add(_load_with_datasets(out, rowset))
    return result


def _files_match_manifest(out: Path, manifest: Manifest, rehash: bool) -> ValidationCheck:
    shards = set(manifest.data_files)  # hashed as written; the rest (card, picture) here
    problems: list[str] = []
    for name, entry in manifest.files.items():
        path = out / name
        if not path.is_file():
            problem = f"{name}: missing"
        elif path.stat().st_size != entry["size"]:
            problem = f"{name}: {path.stat().st_size} bytes, manifest says {entry['size']}"
        elif (rehash or name not in shards) and sha256_file(path) != entry["sha256"]:
            problem = f"{name}: sha256 differs from the manifest (file changed or corrupt)"
        else:
            continue
        problems.append(problem)
        forget_shard(out, name)  # so that the rerun rebuilds it instead of trusting it
    data = out / "data"
    extra = sorted(rel for p in data.rglob("*") if p.is_file()
                   and (rel := p.relative_to(out).as_posix()) not in manifest.files
                   ) if data.is_dir() else []
    if extra:
        problems.append(f"not in the manifest, would be uploaded and loaded: "
                        f"{summarize_paths(extra)}")
    return ValidationCheck(
        name="staged files match manifest", expected=len(manifest.files),
        actual=len(manifest.files) - len(problems), passed=not problems,
        details="\n".join(problems) + ("\nRestage (rerun push.py) to rebuild them."
                                       if problems else ""),
    )


def _every_image_embedded(rowset: RowSet, plan: ShardPlan, manifest: Manifest) -> ValidationCheck:
    """The rows' images against what the shard records say they embed (hashes as read)."""
    by_name = {s["name"]: s for s in manifest.shards}
    problems: list[str] = []
    checked = 0
    for spec in plan.shards:
        record = by_name.get(spec.name)
        if record is None:
            problems.append(f"{spec.name}: no record of a verified shard")
            continue
        planned = {f.path for i in spec.rows for _, f in rowset.rows[i].files()}
        embedded = set(record["sources"])
        for path in sorted(planned - embedded):
            problems.append(f"{shown(path)}: planned in {spec.name} but not embedded there")
        for path in sorted(embedded - planned):
            problems.append(f"{shown(path)}: embedded in {spec.name} but not planned there")
        checked += len(planned & embedded)
    expected = len(rowset.image_paths())
    return ValidationCheck(
        name="every claimed image embedded, read back equal", expected=expected,
        actual=checked, passed=not problems and checked == expected,
        details=first_lines(problems, 20))


def _row_counts(out: Path, rowset: RowSet, plan: ShardPlan) -> ValidationCheck:
    """Rows per split in the Parquet footers, against the rows assembled from the tree."""
    stored: dict[str, int] = dict.fromkeys(rowset.splits, 0)
    wrong: list[str] = []
    for spec in plan.shards:
        counts = {name: pq.ParquetFile(out / name).metadata.num_rows
                  for name in spec.files if (out / name).is_file()}
        stored[spec.split] += counts.get(spec.name, 0)
        wrong += [f"{name}: {n} rows, its shard has {len(spec.rows)}"
                  for name, n in counts.items() if n != len(spec.rows)]
    planned = {s: len(rowset.rows_of(s)) for s in rowset.splits}
    wrong += [f"{s}: {stored[s]} rows stored, {planned[s]} planned" for s in planned
              if stored[s] != planned[s]]
    return ValidationCheck(name="rows as planned", expected=sum(planned.values()),
                           actual=sum(stored.values()), passed=not wrong,
                           details="\n".join(wrong))


def _load_with_datasets(out: Path, rowset: RowSet) -> ValidationCheck:
    problems: list[str] = []
    for config, columns in rowset.config_columns.items():  # each config's own files
        try:
            loaded = datasets.load_dataset(str(out), config, split=rowset.splits[0],
                                           streaming=True).features
            if list(loaded) != columns:
                problems.append(f"config {config}: columns {list(loaded)}, planned {columns}")
        except Exception as err:  # noqa: BLE001  (the failure is the finding)
            problems.append(f"config {config}: load_dataset failed: {type(err).__name__}: {err}")
    for split in rowset.splits:
        try:
            ds = datasets.load_dataset(str(out), split=split, streaming=True)
            if ds.features != rowset.features:
                problems.append(f"{split}: features differ from the plan:\n  loaded  {ds.features}"
                                f"\n  planned {rowset.features}")
                continue
            column = _smallest_image_column(rowset, split)
            if column is None:
                continue
            # Only that column and the first subject's rows are read: datasets projects
            # columns and the row-group statistics of subject_id skip the other row groups.
            # The iteration runs to its end: a Parquet scan left half-read makes the process
            # hang when it exits (apache/arrow#45214, #50482; datasets works around it only
            # up to pyarrow 24).
            subject = row_ids(rowset.rows_of(split)[0], rowset.schema.row)["subject_id"]
            rows = list(datasets.load_dataset(
                str(out), split=split, streaming=True, columns=["subject_id", column],
                filters=[("subject_id", "==", subject)]))
            value = rows[0][column]
            image = value[0] if isinstance(value, list) else value
            image.header.get_data_shape()  # decoded into a nibabel image
        except Exception as err:  # noqa: BLE001  (the failure is the finding)
            problems.append(f"{split}: load_dataset failed: {type(err).__name__}: {err}")
    return ValidationCheck(
        name="datasets loads staged folder", expected="planned features",
        actual="ok" if not problems else "failed", passed=not problems,
        details="\n".join(problems),
    )


def _smallest_image_column(rowset: RowSet, split: str) -> str | None:
    """The image column whose image in the split's first row is smallest (decoding reads it
    whole into memory), if it is under the decode limit."""
    rows = rowset.rows_of(split)
    if not rows:
        return None
    sizes = {c: files[0].size for c, files in rows[0].images.items() if files}
    column = min(sizes, key=lambda c: sizes[c], default=None)
    return column if column is not None and sizes[column] <= _DECODE_LIMIT else None
