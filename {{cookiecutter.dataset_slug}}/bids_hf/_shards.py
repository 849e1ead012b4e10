"""Shard writer: rows -> Parquet shards with the NIfTI bytes embedded, in one pass over the sources.

Writing reuses ``datasets.arrow_writer.ParquetWriter`` so the files carry ``datasets``' own
conventions (no compression and PLAIN encoding on embedded bytes, content-defined chunking
for Xet dedup, page index, ``huggingface`` schema metadata that restores ``Nifti``). What we
do differently, and why:

* **One read per file.** Every claimed file is read once, straight into its row group's
  buffer (one anonymous memory map per row group: no Python ``bytes`` per file). While
  pyarrow encodes that buffer, a thread pool looks at the same bytes (``_inspect``: sha256,
  full inflate, header, privacy scan). File reads, inflating, hashing and Parquet encoding
  all release the GIL, so they share the CPUs. A source whose size, mtime or ctime differ
  from the index changed after the plan was made: the run stops (``SourceChangedError``)
  rather than ship bytes nobody planned.
* the stored ``path`` is the BIDS-relative path (``datasets``' embedding keeps the basename);
* no Parquet statistics on embedded bytes (min/max copies of whole images);
* **Commit.** A finished shard is committed in a background thread while the next one is
  written: fsync, sha256 of the file, footer check, and a read-back of every embedded image
  (one row at a time), hashed and compared with the hash taken when its source was read. Only
  a shard whose images are all intact and read back equal is renamed into place and recorded
  (``_state.ShardRecord``). A shard holding a bad image is not kept, and the run goes on, so
  one run names every bad file.
* **Reuse.** A recorded shard is kept only when its fingerprint matches the plan, the file
  still hashes to its record, and every source still hashes to the bytes it embeds: content,
  not size and mtime, so a file rewritten in place with its old mtime gets its shard rebuilt.
* **Parallelism.** ``cpus`` (default: every CPU this process may use) sets the thread pool;
  from six CPUs on, shards are also written by several processes (one per three CPUs: each
  keeps about one CPU encoding and two inflating and hashing). They are spawned, not forked:
  forking a process that runs Arrow's thread pools can deadlock.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import multiprocessing as mp
import os
import queue as queue_module
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter, get_parquet_column_options

from ._errors import BidsHfError, InputError, ResourceError, SourceChangedError
from ._index import BidsFile
from ._inspect import ImageReport, inspect_image
from ._phi import Finding
from ._plan import ShardPlan, ShardSpec
from ._rows import Row, RowSet, row_ids
from ._state import (
    ShardRecord,
    StatePaths,
    forget_shard,
    no_space_is_an_error,
    read_shard_record,
    write_shard_record,
)
from ._util import (
    available_cpus,
    fsync_dir,
    map_large_allocations,
    sha256_file,
    sha256_mapped,
    shown,
)

_NIFTI_TYPE = pa.struct({"bytes": pa.binary(), "path": pa.string()})
_CPUS_PER_WRITER = 3
_MIN_CPUS_FOR_PROCESSES = 6


class ShardError(BidsHfError):
    """A written shard failed its own check (a fault of this machine or a bug: report it)."""


@dataclass(frozen=True)
class BadImage:
    """A claimed image that may not be published, and why."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{shown(self.path)}: {self.problem}"


@dataclass
class BuildResult:
    """What a build did: the records of every selected shard that is in place, and the images
    that kept a shard from being written."""

    records: dict[str, ShardRecord] = field(default_factory=dict)
    bad: list[BadImage] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """Privacy findings in the headers of every image of the recorded shards."""
        return [Finding(**f) for r in self.records.values() for f in r.findings]

    @property
    def sources(self) -> dict[str, str]:
        return {p: h for r in self.records.values() for p, h in r.sources.items()}


@dataclass(frozen=True)
class _Job:
    """Everything one shard needs, picklable for worker processes."""

    spec: ShardSpec
    rows: list[Row]
    features: dict[str, Any]
    image_columns: dict[str, bool]
    schema_row: str
    root: str
    out: str
    full: bool  # inflate every image (integrity); the header check runs regardless
    configs: dict[str, list[str]] = field(default_factory=dict)  # config -> its columns


@dataclass
class _Outcome:
    name: str
    record: ShardRecord | None  # None: not kept, see ``bad``
    bad: list[BadImage]


ProgressFn = Callable[[int], None]


def build_shards(rowset: RowSet, plan: ShardPlan, out: Path, *, cpus: int | None = None,
                 only: Iterable[ShardSpec] | None = None, full: bool = True,
                 progress: bool = True) -> BuildResult:
    """Write the plan's shards under ``out/data`` (or ``only`` those), reusing valid ones."""
    cpus = cpus or available_cpus()
    map_large_allocations()
    selected = list(only) if only is not None else list(plan.shards)
    (out / "data").mkdir(parents=True, exist_ok=True)
    StatePaths(out).shards.mkdir(parents=True, exist_ok=True)
    root = rowset.index.root
    result = BuildResult()
    with ThreadPoolExecutor(max_workers=cpus, thread_name_prefix="bids-hf-reuse") as pool:
        for spec, record in zip(selected, _reusable(out, selected, root, pool), strict=True):
            if record is not None:
                result.records[spec.name] = record
                result.reused.append(spec.name)
    todo = [spec for spec in selected if spec.name not in result.records]
    # Made one at a time: each job carries its rows and the features, and a large dataset
    # has thousands of shards.
    jobs = (_job(rowset, spec, out, full) for spec in todo)
    total = sum(s.nbytes for s in selected)
    done = total - sum(s.nbytes for s in todo)
    writers = min(len(todo), cpus // _CPUS_PER_WRITER) if cpus >= _MIN_CPUS_FOR_PROCESSES else 1
    with _progress_bar(total, done, progress, len(result.reused)) as advance:
        if writers <= 1:
            outcomes = _write_here(jobs, cpus, advance)
        else:
            outcomes = _write_in_processes(jobs, writers, max(2, cpus // writers), advance)
    for outcome in outcomes:
        result.bad += outcome.bad
        if outcome.record is not None:
            result.records[outcome.name] = outcome.record
            result.built.append(outcome.name)
    result.records = {s.name: result.records[s.name] for s in selected if s.name in result.records}
    return result


def _job(rowset: RowSet, spec: ShardSpec, out: Path, full: bool) -> _Job:
    return _Job(spec=spec, rows=[rowset.rows[i] for i in spec.rows],
                features=rowset.features.to_dict(), image_columns=rowset.image_columns,
                schema_row=rowset.schema.row, root=str(rowset.index.root), out=str(out),
                full=full, configs={c: rowset.config_columns[c] for c in spec.configs})


def changed_since_indexed(rowset: RowSet) -> list[str]:
    """Claimed files whose size, mtime or ctime are no longer what the index saw."""
    changed = []
    for path in sorted({f.path for r in rowset.rows for _, f in r.files()}):
        f = rowset.index.file(path)
        if f is None:
            continue
        try:
            st = os.stat(rowset.index.root / path)
        except OSError:
            changed.append(path)
            continue
        if not _same_file(st, f):
            changed.append(path)
    return changed


def _same_file(st: os.stat_result, f: BidsFile) -> bool:
    if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
        return False
    return not f.ctime_ns or st.st_ctime_ns == f.ctime_ns


# -- reuse -----------------------------------------------------------------------------------------


def _reusable(out: Path, specs: list[ShardSpec], root: Path,
              pool: ThreadPoolExecutor) -> list[ShardRecord | None]:
    """For each spec, its record if the shard on disk can be kept as it is, else ``None``.

    Kept when the record matches the plan's fingerprint, its files (the full table and each
    config's) hash to the record, and every source hashes to what they embed. All hashes
    run in ``pool``."""
    candidates: list[tuple[ShardSpec, ShardRecord, dict[str, Future[str | None]],
                           dict[str, Future[str | None]]]] = []
    for spec in specs:
        record = read_shard_record(out, spec.name)
        if record is None or record.fingerprint != spec.fingerprint \
                or sorted(record.files) != sorted(spec.files):
            continue
        try:
            if any((out / name).stat().st_size != f["size"] for name, f in record.files.items()):
                continue
        except OSError:
            continue
        candidates.append((spec, record,
                           {n: pool.submit(_hash_or_none, out / n) for n in record.files},
                           {p: pool.submit(_hash_or_none, root / p) for p in record.sources}))
    kept: dict[str, ShardRecord] = {}
    for spec, record, files, sources in candidates:
        if any(f.result() != record.files[n]["sha256"] for n, f in files.items()):
            forget_shard(out, spec.name)  # corrupted or replaced since it was verified
            continue
        if any(f.result() != record.sources[p] for p, f in sources.items()):
            forget_shard(out, spec.name)  # a source changed: its shard no longer matches
            continue
        try:
            for name in spec.files:
                _check_written(out / name, spec)
        except ShardError:
            forget_shard(out, spec.name)
            continue
        kept[spec.name] = record
    return [kept.get(spec.name) for spec in specs]


def _hash_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


# -- writing, in this process ------------------------------------------------------------------


def _write_here(jobs: Iterable[_Job], threads: int, advance: ProgressFn) -> list[_Outcome]:
    """Shards one after the other, in a pipeline of three threads' work:

    * main: encodes shard k+1 (the pool reads and inspects its sources meanwhile);
    * verifier: reads shard k back (hash, footer, every image);
    * persister: fsyncs, renames and records shard k-1.

    Encoding waits for the previous shard's read-back: the two memory-heavy steps never
    overlap, so peak memory is the larger of them, not their sum. Reading, inspecting and
    flushing overlap everything."""
    outcomes: list[_Outcome] = []
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bids-hf-read") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="bids-hf-verify") as verifier, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="bids-hf-persist") as persister:
        verifying: Future[_Verified | _Outcome] | None = None
        persisting: list[Future[_Outcome]] = []
        written: _Written | None = None

        def previous_verified() -> None:
            nonlocal verifying
            if verifying is not None:
                checked = verifying.result()
                verifying = None
                if isinstance(checked, _Outcome):
                    outcomes.append(checked)
                else:
                    persisting.append(persister.submit(_persist, checked))

        try:
            for job in jobs:
                written = _write_tmp(job, pool, advance, before_encoding=previous_verified)
                previous_verified()  # a shard without images never called it
                verifying = verifier.submit(_verify, written)
                written = None
            previous_verified()
            outcomes += [f.result() for f in persisting]
        except BaseException:
            if written is not None:  # a step failed before this shard was handed over
                _discard(written)
            with contextlib.suppress(BaseException):  # each step removes its files on failure
                if verifying is not None and isinstance(checked := verifying.result(), _Verified):
                    _persist(checked)  # verified already: keep it for the rerun
            for future in persisting:
                with contextlib.suppress(BaseException):
                    future.result()
            raise
    return outcomes


@dataclass(frozen=True)
class _Written:
    """A finished shard in temporary files (the full table, then each config's), not yet
    committed, and what its images turned out to be."""

    job: _Job
    tmps: dict[str, Path]  # final name -> temporary file
    reports: list[ImageReport]


def _tmp_path(out: Path, name: str) -> Path:
    final = out / name
    return final.with_name(f".{final.name}.tmp")


def _write_tmp(job: _Job, pool: ThreadPoolExecutor, advance: ProgressFn | None,
               before_encoding: Callable[[], None] | None = None) -> _Written:
    spec, out, root = job.spec, Path(job.out), Path(job.root)
    tmps = {name: _tmp_path(out, name) for name in spec.files}
    features = datasets.Features.from_dict(job.features)
    by_index = dict(zip(spec.rows, job.rows, strict=True))
    forget_shard(out, spec.name)  # the old record no longer describes what will be there
    groups = [[by_index[i] for i in group] for group in spec.row_groups]
    reports: list[ImageReport] = []
    writers: dict[str, tuple[ParquetWriter, list[str] | None]] = {}
    try:
        # A full disk surfaces as OSError(ENOSPC) from whichever write of pyarrow's Parquet
        # writer hits it (pages, page index, footer: pyarrow 26, checked page by page on a
        # full tmpfs), so no preallocation is needed to fail cleanly.
        with contextlib.ExitStack() as stack:
            stack.enter_context(no_space_is_an_error(out / "data", spec.nbytes))
            for name, tmp in tmps.items():
                tmp.parent.mkdir(parents=True, exist_ok=True)
                stream = stack.enter_context(pa.OSFile(str(tmp), "wb"))
                columns = None if name == spec.name else job.configs[_config_of(name)]
                subset = features if columns is None else datasets.Features(
                    {c: features[c] for c in columns})
                writers[name] = (_EmbeddedParquetWriter(features=subset, stream=stream),
                                 columns)
            for k, rows in enumerate(groups):
                if k + 1 < len(groups):
                    _prefetch(groups[k + 1], root)  # the kernel reads ahead while we encode
                reports += _write_group(writers, rows, job, features, root, pool,
                                        before_encoding if k == 0 else None)
                # Hand freed pages back to the OS now: the allocator would otherwise keep
                # them, and peak memory would grow with the number of row groups.
                pa.default_memory_pool().release_unused()
                if advance is not None:
                    advance(sum(r.nbytes for r in rows))
            for writer, _ in writers.values():
                writer.finalize(close_stream=False)
        return _Written(job, tmps, reports)
    except BaseException:
        for writer, _ in writers.values():
            _abandon(writer)
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise


def _abandon(writer: ParquetWriter) -> None:
    """Forget a writer whose file is being deleted. After a failed write pyarrow's writer
    still counts itself open, and its ``__del__`` would later write a footer into the closed
    file: "Exception ignored ... Invalid operation on closed file" and a traceback on stderr,
    after the run's own message."""
    if writer.pa_writer is not None:
        writer.pa_writer.is_open = False


def _config_of(name: str) -> str:
    """``data/<config>/<file>`` -> ``<config>``."""
    return name.split("/")[1]


def _write_group(writers: dict[str, tuple[ParquetWriter, list[str] | None]], rows: list[Row],
                 job: _Job, features: datasets.Features, root: Path, pool: ThreadPoolExecutor,
                 before_encoding: Callable[[], None] | None = None) -> list[ImageReport]:
    """Read the group's files into one buffer (in parallel), then encode it into the full
    table and each config's file while the pool inspects the same bytes."""
    layout = _Layout(rows, job.image_columns)
    buffer, view = _blob_buffer(layout.total)
    slices = [(f, view[a:b]) for f, a, b in layout.files]
    _all_done([pool.submit(_read_source, root / f.path, target, f) for f, target in slices])
    inspections = [pool.submit(inspect_image, target, f.path, job.full) for f, target in slices]
    try:
        if before_encoding is not None:
            before_encoding()
        table = _table(rows, layout, buffer, features, job.image_columns, job.schema_row)
        for writer, columns in writers.values():
            part = table if columns is None else table.select(columns)  # no copy
            # One write per row group: datasets passes writer_batch_size as its row group size.
            writer.write_table(part, writer_batch_size=len(rows))
        del table
    finally:
        wait(inspections)  # they read the buffer: it may not go before they are done
    return [f.result() for f in inspections]


def _all_done(futures: list[Future[None]]) -> None:
    """Wait for every future (they write into a shared buffer), then raise the first error."""
    wait(futures)
    for f in futures:
        f.result()


def _commit(written: _Written) -> _Outcome:
    """Verify a shard's temporary files, then make them durable and recorded."""
    checked = _verify(written)
    return checked if isinstance(checked, _Outcome) else _persist(checked)


@dataclass(frozen=True)
class _Verified:
    """A shard whose temporary files hold exactly the bytes that were read and inspected."""

    written: _Written
    files: dict[str, dict[str, Any]]  # name -> {"sha256"} so far
    hashes: dict[str, str]  # source path -> sha256


def _verify(written: _Written) -> _Verified | _Outcome:
    """Keep a shard only if its images are intact and read back equal: hash each file (from
    the page cache), check its footer, read every image back. On failure nothing is kept."""
    job, tmps = written.job, written.tmps
    spec = job.spec
    bad = [BadImage(r.path, r.problem) for r in written.reports if r.problem]
    if bad:  # neither this shard nor an earlier version of it may be loaded or uploaded
        _discard(written, finals=True)
        return _Outcome(spec.name, None, bad)
    hashes = {r.path: r.sha256 for r in written.reports}
    try:
        files: dict[str, dict[str, Any]] = {}
        mismatched: set[str] = set()
        for name, tmp in tmps.items():
            files[name] = {"sha256": sha256_mapped(tmp)}
            _check_written(tmp, spec)
            columns = None if name == spec.name else set(job.configs[_config_of(name)])
            mismatched.update(_read_back(tmp, job, hashes, columns))
            # pyarrow's allocator (mimalloc) keeps a heap per thread: give this one's back.
            pa.default_memory_pool().release_unused()
    except BaseException:
        _discard(written)
        raise
    if mismatched:
        _discard(written)
        return _Outcome(spec.name, None, [
            BadImage(p, f"the bytes read back from {spec.name} differ from the file as it was "
                        "read (a fault of this machine's memory or disk, or a bug to report); "
                        "rerun to rebuild it") for p in sorted(mismatched)])
    return _Verified(written, files, hashes)


def _persist(verified: _Verified) -> _Outcome:
    """fsync, rename into place, fsync the folders, then record: a record only ever
    describes files that are on disk."""
    written = verified.written
    spec, out = written.job.spec, Path(written.job.out)
    files = verified.files
    try:
        with no_space_is_an_error(out / "data"):
            for tmp in written.tmps.values():
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            for name, tmp in written.tmps.items():
                os.replace(tmp, out / name)
            for folder in {(out / name).parent for name in written.tmps}:
                fsync_dir(folder)
            for name in written.tmps:
                st = (out / name).stat()
                files[name].update(size=st.st_size, mtime_ns=st.st_mtime_ns)
            record = ShardRecord(
                name=spec.name, fingerprint=spec.fingerprint, rows=len(spec.rows),
                row_groups=len(spec.row_groups), files=files,
                sources=dict(sorted(verified.hashes.items())),
                findings=[asdict(f) for r in written.reports for f in r.findings])
            write_shard_record(out, record)
    except BaseException:
        _discard(written)
        raise
    return _Outcome(spec.name, record, [])


def _discard(written: _Written, finals: bool = False) -> None:
    out = Path(written.job.out)
    for name, tmp in written.tmps.items():
        tmp.unlink(missing_ok=True)
        if finals:
            (out / name).unlink(missing_ok=True)


def _read_back(path: Path, job: _Job, hashes: dict[str, str],
               columns: set[str] | None) -> list[str]:
    """Paths of embedded images whose stored bytes do not hash to ``hashes`` (or that are
    missing or misplaced). Reads one row of one column at a time: memory stays at one cell.
    ``columns``: the file's columns (a config's), ``None`` for the full table."""
    pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    wrong: list[str] = []
    for column, is_list in job.image_columns.items():
        if columns is not None and column not in columns:
            continue
        batches = pf.iter_batches(batch_size=1, columns=[column], use_threads=False)
        for row, batch in zip(job.rows, batches, strict=True):
            want = [(f.path, hashes[f.path]) for f in row.images.get(column, [])]
            got = list(embedded_hashes(batch.column(0), is_list))
            if got != want:  # different bytes, or the right bytes in the wrong place
                wrong += sorted({p for p, _ in set(want) ^ set(got)} or {p for p, _ in want})
    return wrong


def embedded_hashes(array: pa.Array | pa.ChunkedArray, is_list: bool) -> Iterator[tuple[str, str]]:
    """(stored path, sha256 of stored bytes) of every image in an image column, in order."""
    import hashlib

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    structs = array.flatten() if is_list else array.filter(array.is_valid())
    blobs, paths = structs.flatten()  # offset-aware children: bytes, path
    offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[
        blobs.offset: blobs.offset + len(blobs) + 1]
    data = blobs.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    for k, p in enumerate(paths.to_pylist()):
        yield p, hashlib.sha256(view[offsets[k]:offsets[k + 1]]).hexdigest()


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


def _read_source(path: Path, target: memoryview, f: BidsFile) -> None:
    """Fill ``target`` with the file's bytes; the file must still be what the index saw."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise InputError(f"Cannot read {shown(f.path)}: {err.strerror}. Check it exists and is "
                         "readable (a DataLad tree may need `datalad get`).") from None
    try:
        if not _same_file(os.fstat(fd), f):
            raise SourceChangedError(
                f"{shown(f.path)} changed after the tree was indexed (size, mtime or ctime "
                "differ). Rerun once the data stop changing: finished shards are reused.",
                resumable=True)
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            filled = 0
            while filled < len(target):
                n = fh.readinto(target[filled:])
                if not n:
                    break
                filled += n
            extra = fh.read(1)
    except OSError as err:
        raise InputError(f"Cannot read {shown(f.path)}: {err.strerror}.") from None
    finally:
        os.close(fd)
    if filled != len(target) or extra:
        raise SourceChangedError(
            f"{shown(f.path)} changed size while it was being read (expected {len(target)} "
            "bytes). "
            "Rerun once the data stop changing: finished shards are reused.", resumable=True)


# -- Arrow -----------------------------------------------------------------------------------------


class _Layout:
    """Where each file of a row group goes in the group's buffer: one contiguous region per
    image column, files in storage order (rows, then list items)."""

    def __init__(self, rows: list[Row], image_columns: dict[str, bool]) -> None:
        self.columns: dict[str, tuple[int, list[BidsFile | None], list[int], list[int] | None]] = {}
        self.files: list[tuple[BidsFile, int, int]] = []
        pos = 0
        for column, is_list in image_columns.items():
            cells = [r.images.get(column, []) for r in rows]
            list_offsets: list[int] | None
            if is_list:
                slots: list[BidsFile | None] = [f for cell in cells for f in cell]
                counts = [0]
                for cell in cells:
                    counts.append(counts[-1] + len(cell))
                list_offsets = counts
            else:  # one slot per row; a row without a file gets an empty slot, masked as null
                slots, list_offsets = [cell[0] if cell else None for cell in cells], None
            start, offsets = pos, [0]
            for f in slots:
                size = f.size if f is not None else 0
                if f is not None:
                    self.files.append((f, pos, pos + size))
                pos += size
                offsets.append(pos - start)
            self.columns[column] = (start, slots, offsets, list_offsets)
        self.total = pos


def _blob_buffer(size: int) -> tuple[pa.Buffer, memoryview]:
    """A fresh anonymous memory map for one row group's file bytes, as an Arrow buffer.

    Row groups vary in size; allocators keep freed blocks of one size class around for
    reuse, which grew RSS across row groups by up to 280 MB in our measurements. A private
    map is unmapped as soon as the last Arrow reference to it goes.
    """
    if size == 0:
        return pa.py_buffer(b""), memoryview(bytearray())
    # MAP_POPULATE maps all pages at once instead of one page fault per 4 KB on first write.
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    mapped = mmap.mmap(-1, size, flags=flags)
    return pa.py_buffer(mapped), memoryview(mapped)


def _table(rows: list[Row], layout: _Layout, buffer: pa.Buffer, features: datasets.Features,
           image_columns: dict[str, bool], schema_row: str) -> pa.Table:
    schema = features.arrow_schema
    ids = [row_ids(r, schema_row) for r in rows]
    arrays: list[pa.Array] = []
    for field_ in schema:
        name = field_.name
        if name in image_columns:
            arrays.append(_nifti_array(layout, name, buffer))
        else:
            values = [ids[i][name] if name in ids[i] else r.values.get(name)
                      for i, r in enumerate(rows)]
            arrays.append(pa.array(values, type=field_.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _nifti_array(layout: _Layout, column: str, buffer: pa.Buffer) -> pa.Array:
    """The column's images as Arrow, pointing into the group's buffer (no copy):
    ``struct<bytes, path>`` or a list of them per row."""
    start, slots, offsets, list_offsets = layout.columns[column]
    data = buffer.slice(start, offsets[-1])
    offsets_buf = pa.array(offsets, type=pa.int32()).buffers()[1]
    blobs = pa.Array.from_buffers(pa.binary(), len(slots), [None, offsets_buf, data])
    paths = pa.array([f.path if f is not None else None for f in slots], type=pa.string())
    missing = [f is None for f in slots]
    mask = pa.array(missing, type=pa.bool_()) if any(missing) else None
    structs = pa.StructArray.from_arrays([blobs, paths], fields=list(_NIFTI_TYPE), mask=mask)
    if list_offsets is None:
        return structs
    return pa.ListArray.from_arrays(pa.array(list_offsets, type=pa.int32()), structs)


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
        # (setdefault: a datasets release with upstream's statistics patch sets it itself).
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
            f"{spec.name}: holds {meta.num_rows} rows in {meta.num_row_groups} row groups, "
            f"planned {len(spec.rows)} in {len(spec.row_groups)}.")


def remove_temporary_files(out: Path) -> None:
    """Temporary shards left by a run that was killed before it could remove them."""
    data = out / "data"
    if data.is_dir():
        for tmp in data.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)


# -- several processes, and progress -----------------------------------------------------------

_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _queue
    _queue = queue
    map_large_allocations()


def _worker(job: _Job, threads: int) -> _Outcome:
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bids-hf-read") as pool:
        written = _write_tmp(job, pool, _queue.put if _queue is not None else None)
    return _commit(written)


def _write_in_processes(jobs: Iterable[_Job], writers: int, threads: int,
                        advance: ProgressFn) -> list[_Outcome]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    try:
        with ProcessPoolExecutor(max_workers=writers, mp_context=ctx,
                                 initializer=_init_worker, initargs=(queue,)) as pool:
            futures = [pool.submit(_worker, job, threads) for job in jobs]
            try:
                while not all(f.done() for f in futures):
                    with contextlib.suppress(queue_module.Empty):
                        advance(queue.get(timeout=0.2))
                    if any(f.done() and f.exception() is not None for f in futures):
                        for f in futures:
                            f.cancel()  # shards not started; running ones finish or clean up
                        wait(futures)
                        break
                with contextlib.suppress(queue_module.Empty):
                    while True:
                        advance(queue.get_nowait())
                return [f.result() for f in futures]  # re-raises a worker's error
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    except BrokenProcessPool:
        raise ResourceError(
            "A shard-writing process died (killed, or out of memory). Rerun the same command: "
            "finished shards are reused; with little memory, lower --num-proc or "
            "--row-group-size.", resumable=True) from None


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
