"""Shard writer: rows -> Parquet shards with the NIfTI bytes embedded. Atomic and resumable.

Writing reuses ``datasets.arrow_writer.ParquetWriter`` so the files carry ``datasets``' own
conventions (no compression and PLAIN encoding on embedded bytes, content-defined chunking
for Xet dedup, page index, ``huggingface`` schema metadata that restores ``Nifti``). What we
do differently, and why:

* each row group is built directly as Arrow: files are read straight into one preallocated
  buffer (one copy, no Python ``bytes`` per file), so peak memory is one row group;
* the stored ``path`` is the BIDS-relative path (``datasets``' embedding rewrites it to
  the basename, which loses the subject/session folders);
* no Parquet statistics on embedded bytes (min/max copies of whole images, see below);
* a shard is written to a hidden temporary name, fsynced, checked (footer readable, row
  and row-group counts), renamed, and only then recorded in ``.bids_hf/shards/<name>.json``
  with its size, sha256 (of the file as written) and plan fingerprint. A rerun reuses a
  shard only when that record, the file's size and mtime, and the fingerprint all agree;
* I/O overlaps CPU: the next row group's files are prefetched, and shard N is committed
  (fsync, hash, check, rename) in a second thread while shard N+1 is written.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import multiprocessing as mp
import os
import queue as queue_module
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter, get_parquet_column_options

from ._index import BidsFile
from ._plan import ShardPlan, ShardSpec
from ._rows import Row, RowSet, row_ids
from ._util import fsync_dir, sha256_file

STATE_DIR = ".bids_hf"
_NIFTI_TYPE = pa.struct({"bytes": pa.binary(), "path": pa.string()})


def _blob_buffer(size: int) -> tuple[pa.Buffer, memoryview]:
    """A fresh anonymous memory map for one row group's file bytes, as an Arrow buffer.

    Row groups vary in size; allocators keep freed blocks of one size class around for
    reuse (mimalloc's segments; glibc's heap once its dynamic mmap threshold has risen),
    which grew RSS across row groups by up to 280 MB in our measurements. A private map is
    unmapped as soon as the last Arrow reference to it goes.
    """
    if size == 0:
        return pa.py_buffer(b""), memoryview(bytearray())
    # MAP_POPULATE maps all pages at once instead of one page fault per 4 KB on first write
    # (which cost about as much as reading the files).
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    mapped = mmap.mmap(-1, size, flags=flags)
    return pa.py_buffer(mapped), memoryview(mapped)


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
            records.update(_write_serial(jobs, advance))
        else:
            records.update(_write_parallel(jobs, num_proc, advance))
    return {spec.name: records[spec.name] for spec in selected}


def _write_serial(jobs: list[_Job], advance: ProgressFn) -> dict[str, ShardRecord]:
    """Write shards one after the other; each is committed (fsync, check, rename) in the
    background while the next one is written, so disk flushes overlap encoding."""
    records: dict[str, ShardRecord] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit") as committer:
        pending: Future[ShardRecord] | None = None
        try:
            for job in jobs:
                written = _write_tmp(job, advance)
                if pending is not None:
                    record = pending.result()
                    records[record.name] = record
                pending = committer.submit(_commit, written)
            if pending is not None:
                record = pending.result()
                records[record.name] = record
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
    return records


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
    """Write one shard and commit it: temporary file -> fsync -> check -> rename -> record."""
    return _commit(_write_tmp(job, advance))


@dataclass(frozen=True)
class _Written:
    """A finished temporary shard file, not yet committed."""

    job: _Job
    tmp: Path


def _write_tmp(job: _Job, advance: ProgressFn | None) -> _Written:
    spec, out = job.spec, Path(job.out)
    final = out / spec.name
    tmp = final.with_name(f".{final.name}.tmp")
    features = datasets.Features.from_dict(job.features)
    by_index = dict(zip(spec.rows, job.rows, strict=True))
    root = Path(job.root)
    _record_path(out, spec).unlink(missing_ok=True)  # the old record no longer describes the file
    groups = [[by_index[i] for i in group] for group in spec.row_groups]
    try:
        # pyarrow's own file: pages go from the encoder to the OS with no Python in between.
        with pa.OSFile(str(tmp), "wb") as stream:
            writer = _EmbeddedParquetWriter(features=features, stream=stream)
            for k, rows in enumerate(groups):
                if k + 1 < len(groups):
                    _prefetch(groups[k + 1], root)  # the kernel reads ahead while we encode
                table = row_group_table(rows, features, job.image_columns, job.schema_row, root)
                # One write per row group: datasets passes writer_batch_size as the
                # row_group_size of pyarrow's writer.
                writer.write_table(table, writer_batch_size=len(rows))
                del table
                if advance is not None:
                    advance(sum(r.nbytes for r in rows))
            writer.finalize(close_stream=False)
        return _Written(job, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _commit(written: _Written) -> ShardRecord:
    spec, out = written.job.spec, Path(written.job.out)
    final = out / spec.name
    try:
        with open(written.tmp, "rb+") as f:
            os.fsync(f.fileno())
        # Hash the bytes as written (still in the page cache); this runs in the commit
        # thread, on the other core, while the next shard is encoded.
        digest = sha256_file(written.tmp)
        _check_written(written.tmp, spec)
        os.replace(written.tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        written.tmp.unlink(missing_ok=True)
        raise
    st = final.stat()
    record = ShardRecord(
        name=spec.name, rows=len(spec.rows), row_groups=len(spec.row_groups), size=st.st_size,
        sha256=digest, fingerprint=spec.fingerprint, mtime_ns=st.st_mtime_ns,
    )
    _write_record(out, spec, record)
    return record


def _prefetch(rows: list[Row], root: Path) -> None:
    """Ask the kernel to start reading the next row group's files (cold-cache builds)."""
    for row in rows:
        for _, f in row.files():
            try:
                fd = os.open(root / f.path, os.O_RDONLY)
            except OSError:
                continue  # reported when the file is actually read
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except (OSError, AttributeError):  # not every platform has fadvise
                pass
            finally:
                os.close(fd)


class _EmbeddedParquetWriter(ParquetWriter):
    """``datasets``' ParquetWriter with statistics off for embedded-file columns.

    Parquet statistics keep min/max *values* per page and column chunk: for embedded images
    that is copies of whole files, which doubled the writer's peak memory in our measurement
    (72 MB over a 77 MB row group; 24 MB without) and serves no query. Everything else —
    column options, content-defined chunking, page index, metadata — is datasets' own.
    """

    def _build_writer(self, inferred_schema: pa.Schema) -> None:
        self._schema, self._features = self._build_schema(inferred_schema)
        options = get_parquet_column_options(self._features, self._schema)
        # datasets' options list the non-embedded leaves as the dictionary-encoded ones
        # (setdefault: a datasets release with upstream/datasets-nifti.patch sets it itself).
        options.setdefault("write_statistics", list(options["use_dictionary"]))
        self.pa_writer = pq.ParquetWriter(
            self.stream,
            self._schema,
            use_content_defined_chunking=self.use_content_defined_chunking,
            write_page_index=self.write_page_index,
            **options,
        )
        if self.use_content_defined_chunking is not False:
            self.pa_writer.add_key_value_metadata(
                {"content_defined_chunking": json.dumps(self.use_content_defined_chunking)})


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
    """The column's images as Arrow: ``struct<bytes, path>`` or a list of them per row.

    Every file is read straight into one buffer for the whole row group (no per-file
    Python bytes, no concatenation copies).
    """
    cells = [r.images.get(column, []) for r in rows]
    if is_list:
        items = _nifti_structs([f for cell in cells for f in cell], root)
        offsets = [0]
        for cell in cells:
            offsets.append(offsets[-1] + len(cell))
        return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), items)
    # One slot per row; a row without a file gets an empty slot, masked as null.
    return _nifti_structs([cell[0] if cell else None for cell in cells], root)


def _nifti_structs(slots: list[BidsFile | None], root: Path) -> pa.StructArray:
    total = sum(f.size for f in slots if f is not None)
    data, view = _blob_buffer(total)
    offsets = [0]
    for f in slots:
        start = offsets[-1]
        if f is not None:
            _read_into(root / f.path, view[start:start + f.size], f.path)
        offsets.append(start + (f.size if f is not None else 0))
    offsets_buf = pa.array(offsets, type=pa.int32()).buffers()[1]
    blobs = pa.Array.from_buffers(pa.binary(), len(slots), [None, offsets_buf, data])
    paths = pa.array([f.path if f is not None else None for f in slots], type=pa.string())
    missing = [f is None for f in slots]
    mask = pa.array(missing, type=pa.bool_()) if any(missing) else None
    return pa.StructArray.from_arrays([blobs, paths], fields=list(_NIFTI_TYPE), mask=mask)


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
    return _record_of(out, spec.name)


def _record_of(out: Path, name: str) -> Path:
    return out / STATE_DIR / "shards" / (Path(name).stem + ".json")


def forget_shard(out: Path, name: str) -> None:
    """Drop a shard's record so the next build rewrites it (e.g. it failed verification:
    a file corrupted in place can keep its size and mtime, which is all resuming checks)."""
    _record_of(out, name).unlink(missing_ok=True)


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
