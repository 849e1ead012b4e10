"""A shard between its temporary files and its record: verified, made durable, or discarded;
and, on the next run, kept only if it still is what its record says.

* **Verify.** Each temporary file (the full table, then each config's) is hashed from the
  page cache, its footer checked, and every embedded image read back one row at a time and
  hashed: the bytes must be those that were read from the source and inspected. A shard
  holding a bad image, or whose read-back differs, is not kept (nor an earlier version of
  it), and the run goes on, so one run names every bad file.
* **Persist.** fsync, rename into place, fsync the folders, then write the record
  (``_state.ShardRecord``): a record only ever describes files that are on disk.
* **Reuse.** A recorded shard is kept only when its fingerprint matches the plan, its files
  still hash to its record, and every source still hashes to the bytes it embeds: content,
  not size and mtime, so a file rewritten in place with its old mtime gets its shard rebuilt.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ._arrow import embedded_hashes
from ._errors import BidsHfError
from ._inspect import ImageReport
from ._parallel import threads
from ._plan import ShardSpec, config_of
from ._rows import Row
from ._state import (
    ShardRecord,
    forget_shard,
    no_space_is_an_error,
    read_shard_record,
    write_shard_record,
)
from ._util import fsync_dir, sha256_file, sha256_mapped, shown


class ShardError(BidsHfError):
    """A written shard failed its own check (a fault of this machine or a bug: report it)."""


@dataclass(frozen=True)
class BadImage:
    """A claimed image that may not be published, and why."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{shown(self.path)}: {self.problem}"


@dataclass(frozen=True)
class ShardJob:
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

    def columns_of(self, name: str) -> list[str] | None:
        """The columns of one of the shard's files; ``None`` for the full table."""
        config = config_of(name)
        return None if config is None else self.configs[config]


@dataclass(frozen=True)
class Written:
    """A finished shard in temporary files (the full table, then each config's), not yet
    committed, and what its images turned out to be."""

    job: ShardJob
    tmps: dict[str, Path]  # final name -> temporary file
    reports: list[ImageReport]


@dataclass
class Outcome:
    name: str
    record: ShardRecord | None  # None: not kept, see ``bad``
    bad: list[BadImage]


@dataclass(frozen=True)
class Verified:
    """A shard whose temporary files hold exactly the bytes that were read and inspected."""

    written: Written
    files: dict[str, dict[str, Any]]  # name -> {"sha256"} so far
    hashes: dict[str, str]  # source path -> sha256


def commit(written: Written) -> Outcome:
    """Verify a shard's temporary files, then make them durable and recorded."""
    checked = verify(written)
    return checked if isinstance(checked, Outcome) else persist(checked)


def verify(written: Written) -> Verified | Outcome:
    """Keep a shard only if its images are intact and read back equal: hash each file (from
    the page cache), check its footer, read every image back. On failure nothing is kept."""
    job, tmps = written.job, written.tmps
    spec = job.spec
    bad = [BadImage(r.path, r.problem) for r in written.reports if r.problem]
    if bad:  # neither this shard nor an earlier version of it may be loaded or uploaded
        discard(written, finals=True)
        return Outcome(spec.name, None, bad)
    hashes = {r.path: r.sha256 for r in written.reports}
    try:
        mismatched: set[str] = set()
        # Each file's sha256 is taken beside the read-back, not before it: both are GIL-free
        # passes over the same cached pages, and the next shard's encoding waits for this.
        with threads(len(tmps), "hash") as hasher:
            digests = {name: hasher.submit(sha256_mapped, tmp) for name, tmp in tmps.items()}
            for name, tmp in tmps.items():
                check_written(tmp, spec)
                columns = job.columns_of(name)
                mismatched.update(_read_back(tmp, job, hashes,
                                             None if columns is None else set(columns)))
                # pyarrow's allocator (mimalloc) keeps a heap per thread: give this one's back.
                pa.default_memory_pool().release_unused()
            files: dict[str, dict[str, Any]] = {
                name: {"sha256": digest.result()} for name, digest in digests.items()}
    except BaseException:
        discard(written)
        raise
    if mismatched:
        discard(written)
        return Outcome(spec.name, None, [
            BadImage(p, f"the bytes read back from {spec.name} differ from the file as it was "
                        "read (a fault of this machine's memory or disk, or a bug to report); "
                        "rerun to rebuild it") for p in sorted(mismatched)])
    return Verified(written, files, hashes)


def persist(verified: Verified) -> Outcome:
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
        discard(written)
        raise
    return Outcome(spec.name, record, [])


def discard(written: Written, finals: bool = False) -> None:
    """Remove a shard's temporary files (``finals``: and the files of an earlier version)."""
    out = Path(written.job.out)
    for name, tmp in written.tmps.items():
        tmp.unlink(missing_ok=True)
        if finals:
            (out / name).unlink(missing_ok=True)


def check_written(path: Path, spec: ShardSpec) -> None:
    """The file's footer reads and holds the planned rows and row groups."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as err:
        raise ShardError(f"{spec.name}: the written file has no readable footer: {err}") from err
    if meta.num_rows != len(spec.rows) or meta.num_row_groups != len(spec.row_groups):
        raise ShardError(
            f"{spec.name}: holds {meta.num_rows} rows in {meta.num_row_groups} row groups, "
            f"planned {len(spec.rows)} in {len(spec.row_groups)}.")


def _read_back(path: Path, job: ShardJob, hashes: dict[str, str],
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


# -- reuse -----------------------------------------------------------------------------------------


def reusable(out: Path, specs: list[ShardSpec], root: Path,
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
                check_written(out / name, spec)
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
