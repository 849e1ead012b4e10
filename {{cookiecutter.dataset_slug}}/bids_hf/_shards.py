"""Shard writer: rows -> Parquet shards with the NIfTI bytes embedded. Atomic and resumable.

Writing reuses ``datasets.arrow_writer.ParquetWriter`` so the files carry ``datasets``' own
conventions (no compression and PLAIN encoding on embedded bytes, content-defined chunking
for Xet dedup, page index, ``huggingface`` schema metadata that restores ``Nifti``). What we
do differently, and why:

* each row group is built directly as Arrow: files are read straight into one preallocated
  buffer (one copy, no Python ``bytes`` per file), so peak memory is one row group;
* the stored ``path`` is the BIDS-relative path (``datasets``' embedding rewrites it to
  the basename, which loses the subject/session folders);
* a shard is written to a hidden temporary name, fsynced, checked (footer readable, row
  and row-group counts), renamed, and only then recorded in ``.bids_hf/shards/<name>.json``
  with its size, sha256 (hashed while writing) and plan fingerprint. A rerun reuses a shard
  only when that record, the file's size and mtime, and the fingerprint all agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
import queue as queue_module
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter

from ._plan import ShardPlan, ShardSpec
from ._rows import Row, RowSet, row_ids
from ._util import fsync_dir

STATE_DIR = ".bids_hf"
_NIFTI_TYPE = pa.struct({"bytes": pa.binary(), "path": pa.string()})


class ShardError(RuntimeError):
    """A shard could not be written or failed its check after writing."""


@dataclass(frozen=True)
class ShardRecord:
    """What a finished shard is, as recorded next to it (the resume state)."""

    name: str
    rows: int
    row_groups: int
    size: int
    sha256: str
    fingerprint: str
    mtime_ns: int


@dataclass(frozen=True)
class _Job:
    """Everything a worker process needs to write one shard (picklable)."""

    spec: ShardSpec
    rows: list[Row]
    features: dict[str, Any]
    image_columns: dict[str, bool]
    schema_row: str
    root: str
    out: str


ProgressFn = Callable[[int], None]


def build_shards(
    rowset: RowSet,
    plan: ShardPlan,
    out: Path,
    *,
    num_proc: int = 1,
    only: Iterable[ShardSpec] | None = None,
    progress: bool = True,
) -> dict[str, ShardRecord]:
    """Write the plan's shards under ``out/data`` (or ``only`` those), reusing valid ones."""
    selected = list(only) if only is not None else list(plan.shards)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / STATE_DIR / "shards").mkdir(parents=True, exist_ok=True)
    records: dict[str, ShardRecord] = {}
    todo: list[ShardSpec] = []
    for spec in selected:
        record = reusable_record(out, spec)
        if record is not None:
            records[spec.name] = record
        else:
            todo.append(spec)
    jobs = [_job(rowset, spec, out) for spec in todo]
    total = sum(s.nbytes for s in selected)
    done = total - sum(s.nbytes for s in todo)
    with _progress_bar(total, done, progress, len(selected) - len(todo)) as advance:
        if num_proc <= 1 or len(jobs) <= 1:
            for job in jobs:
                records[job.spec.name] = write_shard(job, advance)
        else:
            records.update(_write_parallel(jobs, num_proc, advance))
    return {spec.name: records[spec.name] for spec in selected}


def _job(rowset: RowSet, spec: ShardSpec, out: Path) -> _Job:
    return _Job(
        spec=spec,
        rows=[rowset.rows[i] for i in spec.rows],
        features=rowset.features.to_dict(),
        image_columns=rowset.image_columns,
        schema_row=rowset.schema.row,
        root=str(rowset.index.root),
        out=str(out),
    )


# -- one shard ---------------------------------------------------------------------------


def write_shard(job: _Job, advance: ProgressFn | None = None) -> ShardRecord:
    spec, out = job.spec, Path(job.out)
    final = out / spec.name
    tmp = final.with_name(f".{final.name}.tmp")
    features = datasets.Features.from_dict(job.features)
    by_index = dict(zip(spec.rows, job.rows))
    _record_path(out, spec).unlink(missing_ok=True)  # the old record no longer describes the file
    try:
        with open(tmp, "wb") as raw:
            stream = _HashingWriter(raw)
            writer = ParquetWriter(features=features, stream=stream)  # type: ignore[arg-type]
            for group in spec.row_groups:
                rows = [by_index[i] for i in group]
                table = row_group_table(rows, features, job.image_columns, job.schema_row,
                                        Path(job.root))
                # One write per row group: datasets passes writer_batch_size as the
                # row_group_size of pyarrow's writer.
                writer.write_table(table, writer_batch_size=len(rows))
                del table
                if advance is not None:
                    advance(sum(r.nbytes for r in rows))
            writer.finalize(close_stream=False)
            raw.flush()
            os.fsync(raw.fileno())
        _check_written(tmp, spec)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    st = final.stat()
    record = ShardRecord(
        name=spec.name, rows=len(spec.rows), row_groups=len(spec.row_groups), size=st.st_size,
        sha256=stream.hexdigest(), fingerprint=spec.fingerprint, mtime_ns=st.st_mtime_ns,
    )
    _write_record(out, spec, record)
    return record


def _check_written(path: Path, spec: ShardSpec) -> None:
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as err:
        raise ShardError(f"{spec.name}: the written file has no readable footer: {err}") from err
    if meta.num_rows != len(spec.rows) or meta.num_row_groups != len(spec.row_groups):
        raise ShardError(
            f"{spec.name}: wrote {meta.num_rows} rows in {meta.num_row_groups} row groups, "
            f"planned {len(spec.rows)} in {len(spec.row_groups)}."
        )


class _HashingWriter:
    """A write-only stream that hashes what passes through (saves re-reading the shard)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._pos = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self._raw.write(view)
        self._pos += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self.closed = True  # the caller owns the real file

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# -- Arrow ---------------------------------------------------------------------------------


def row_group_table(
    rows: list[Row],
    features: datasets.Features,
    image_columns: dict[str, bool],
    schema_row: str,
    root: Path,
) -> pa.Table:
    """The Arrow table of one row group, image bytes read from ``root``."""
    schema = features.arrow_schema
    ids = [row_ids(r, schema_row) for r in rows]
    arrays: list[pa.Array] = []
    for field in schema:
        name = field.name
        if name in image_columns:
            arrays.append(_nifti_array(rows, name, image_columns[name], root))
        else:
            values = [ids[i][name] if name in ids[i] else r.values.get(name)
                      for i, r in enumerate(rows)]
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _nifti_array(rows: list[Row], column: str, is_list: bool, root: Path) -> pa.Array:
    files = [f for r in rows for f in r.images.get(column, ())]
    total = sum(f.size for f in files)
    data = pa.allocate_buffer(total, resizable=False)
    view = memoryview(data)  # type: ignore[arg-type]
    offsets = [0]
    for f in files:
        start = offsets[-1]
        _read_into(root / f.path, view[start:start + f.size], f.path)
        offsets.append(start + f.size)
    offsets_buf = pa.array(offsets, type=pa.int32()).buffers()[1]
    blobs = pa.Array.from_buffers(pa.binary(), len(files), [None, offsets_buf, data])
    paths = pa.array([f.path for f in files], type=pa.string())
    if is_list:
        items = pa.StructArray.from_arrays([blobs, paths], fields=list(_NIFTI_TYPE))
        list_offsets = [0]
        for r in rows:
            list_offsets.append(list_offsets[-1] + len(r.images.get(column, ())))
        return pa.ListArray.from_arrays(pa.array(list_offsets, type=pa.int32()), items)
    # One value per row: rows without a file get an empty slot masked as null.
    present = [bool(r.images.get(column)) for r in rows]
    if all(present):
        return pa.StructArray.from_arrays([blobs, paths], fields=list(_NIFTI_TYPE))
    take = []
    k = 0
    for p in present:
        take.append(k if p else None)
        k += p
    indices = pa.array(take, type=pa.int32())
    struct = pa.StructArray.from_arrays([blobs, paths], fields=list(_NIFTI_TYPE))
    return struct.take(indices) if len(files) else pa.nulls(len(rows), type=_NIFTI_TYPE)


def _read_into(path: Path, target: memoryview, rel: str) -> None:
    """Fill ``target`` with the file's bytes; the file must still have its indexed size."""
    try:
        with open(path, "rb", buffering=0) as f:
            filled = 0
            while filled < len(target):
                n = f.readinto(target[filled:])
                if not n:
                    break
                filled += n
            extra = f.read(1)
    except OSError as err:
        raise ShardError(f"Cannot read {rel}: {err}") from err
    if filled != len(target) or extra:
        raise ShardError(
            f"{rel} changed size since the tree was indexed (expected {len(target)} bytes). "
            "Rerun once the data stop changing."
        )


# -- resume state ----------------------------------------------------------------------------


def _record_path(out: Path, spec: ShardSpec) -> Path:
    return out / STATE_DIR / "shards" / (Path(spec.name).stem + ".json")


def _write_record(out: Path, spec: ShardSpec, record: ShardRecord) -> None:
    path = _record_path(out, spec)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_record(out: Path, spec: ShardSpec) -> ShardRecord | None:
    """The recorded state of a shard; ``None`` when absent or unreadable (then rebuilt)."""
    try:
        return ShardRecord(**json.loads(_record_path(out, spec).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def reusable_record(out: Path, spec: ShardSpec) -> ShardRecord | None:
    """The record of a shard that can be kept as it is, else ``None``.

    Kept only if the record was written for this plan fingerprint and the file on disk still
    has the recorded size and mtime and a readable footer with the planned row count. (The
    staged-folder verification later re-hashes every shard against the recorded sha256.)
    """
    record = read_record(out, spec)
    path = out / spec.name
    if record is None or record.fingerprint != spec.fingerprint:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_size != record.size or st.st_mtime_ns != record.mtime_ns:
        return None
    try:
        _check_written(path, spec)
    except ShardError:
        return None
    return record


# -- parallelism and progress ------------------------------------------------------------------

_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _queue
    _queue = queue


def _worker(job: _Job) -> ShardRecord:
    return write_shard(job, _queue.put if _queue is not None else None)


def _write_parallel(jobs: list[_Job], num_proc: int, advance: ProgressFn) -> dict[str, ShardRecord]:
    # spawn, not fork: forking a process that already runs Arrow's thread pools can deadlock.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with ProcessPoolExecutor(max_workers=min(num_proc, len(jobs)), mp_context=ctx,
                             initializer=_init_worker, initargs=(queue,)) as pool:
        futures = [pool.submit(_worker, job) for job in jobs]
        while not all(f.done() for f in futures):
            with contextlib.suppress(queue_module.Empty):
                advance(queue.get(timeout=0.2))
        with contextlib.suppress(queue_module.Empty):
            while True:
                advance(queue.get_nowait())
        records = [f.result() for f in futures]  # re-raises a worker's error
    return {r.name: r for r in records}


@contextlib.contextmanager
def _progress_bar(total: int, initial: int, enabled: bool, reused: int) -> Iterator[ProgressFn]:
    from tqdm.auto import tqdm

    desc = "Writing shards" + (f" ({reused} reused)" if reused else "")
    bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
               desc=desc, disable=not enabled, dynamic_ncols=True)
    try:
        yield bar.update
    finally:
        bar.close()
