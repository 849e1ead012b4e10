"""Shard writer: rows -> Parquet shards with the NIfTI bytes embedded, in one pass over the sources.

The plan (``_plan``) fixes which rows go in which shard and row group. This module runs it:

* **Reuse.** A shard recorded by an earlier run is kept when it still is what its record
  says, files and sources hashed again (``_commit.reusable``); the others are written.
* **One read per file.** Every claimed file is read once (``_sources``), straight into its
  row group's buffer (``_arrow``). While pyarrow encodes that buffer into the full table's
  file and each config's, a thread pool looks at the same bytes (``_inspect``: sha256, full
  inflate, header, privacy scan). File reads, inflating, hashing and Parquet encoding all
  release the GIL, so they share the CPUs.
* **Commit.** A finished shard is verified (every image read back and compared with the hash
  taken when its source was read) and persisted in background threads while the next one is
  written (``_commit``). A shard holding a bad image is not kept, and the run goes on, so
  one run names every bad file.
* **Parallelism.** ``cpus`` (default: every CPU this process may use) sets the thread pool;
  from six CPUs on, shards are also written by several processes (one per three CPUs: each
  keeps about one CPU encoding and two inflating and hashing), spawned (``_parallel``).
"""

from __future__ import annotations

import contextlib
import queue as queue_module
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.arrow_writer import ParquetWriter

from ._arrow import EmbeddedParquetWriter, Layout, abandon, blob_buffer, table
from ._commit import (
    BadImage,
    Outcome,
    ShardJob,
    Verified,
    Written,
    commit,
    discard,
    persist,
    reusable,
    verify,
)
from ._errors import ResourceError
from ._inspect import ImageReport, inspect_image
from ._parallel import available_cpus, process_queue, processes, threads
from ._phi import Finding
from ._plan import ShardPlan, ShardSpec, data_folder
from ._rows import Row, RowSet
from ._sources import prefetch, read_source
from ._state import (
    TEMPORARY_GLOB,
    ShardRecord,
    StatePaths,
    forget_shard,
    no_space_is_an_error,
    temporary_path,
)
from ._util import map_large_allocations

_CPUS_PER_WRITER = 3
_MIN_CPUS_FOR_PROCESSES = 6

ProgressFn = Callable[[int], None]


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


def build_shards(rowset: RowSet, plan: ShardPlan, out: Path, *, cpus: int | None = None,
                 only: Iterable[ShardSpec] | None = None, full: bool = True,
                 progress: bool = True) -> BuildResult:
    """Write the plan's shards under ``out/data`` (or ``only`` those), reusing valid ones."""
    cpus = cpus or available_cpus()
    map_large_allocations()
    selected = list(only) if only is not None else list(plan.shards)
    (out / data_folder()).mkdir(parents=True, exist_ok=True)
    StatePaths(out).shards.mkdir(parents=True, exist_ok=True)
    root = rowset.index.root
    result = BuildResult()
    with threads(cpus, "reuse") as pool:
        for spec, record in zip(selected, reusable(out, selected, root, pool), strict=True):
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


def remove_temporary_files(out: Path) -> None:
    """Temporary shards left by a run that was killed before it could remove them."""
    data = out / data_folder()
    if data.is_dir():
        for tmp in data.rglob(TEMPORARY_GLOB):
            tmp.unlink(missing_ok=True)


def _job(rowset: RowSet, spec: ShardSpec, out: Path, full: bool) -> ShardJob:
    return ShardJob(spec=spec, rows=[rowset.rows[i] for i in spec.rows],
                    features=rowset.features.to_dict(), image_columns=rowset.image_columns,
                    schema_row=rowset.schema.row, root=str(rowset.index.root), out=str(out),
                    full=full, configs={c: rowset.config_columns[c] for c in spec.configs})


# -- writing, in this process ------------------------------------------------------------------


def _write_here(jobs: Iterable[ShardJob], readers: int, advance: ProgressFn) -> list[Outcome]:
    """Shards one after the other, in a pipeline of three threads' work:

    * main: encodes shard k+1 (the pool reads and inspects its sources meanwhile);
    * verifier: reads shard k back (hash, footer, every image);
    * persister: fsyncs, renames and records shard k-1.

    Encoding waits for the previous shard's read-back: the two memory-heavy steps never
    overlap, so peak memory is the larger of them, not their sum. Reading, inspecting and
    flushing overlap everything."""
    outcomes: list[Outcome] = []
    with threads(readers, "read") as pool, threads(1, "verify") as verifier, \
            threads(1, "persist") as persister:
        verifying: Future[Verified | Outcome] | None = None
        persisting: list[Future[Outcome]] = []
        written: Written | None = None

        def previous_verified() -> None:
            nonlocal verifying
            if verifying is not None:
                checked = verifying.result()
                verifying = None
                if isinstance(checked, Outcome):
                    outcomes.append(checked)
                else:
                    persisting.append(persister.submit(persist, checked))

        try:
            for job in jobs:
                written = _write_tmp(job, pool, advance, before_encoding=previous_verified)
                previous_verified()  # a shard without images never called it
                verifying = verifier.submit(verify, written)
                written = None
            previous_verified()
            outcomes += [f.result() for f in persisting]
        except BaseException:
            if written is not None:  # a step failed before this shard was handed over
                discard(written)
            with contextlib.suppress(BaseException):  # each step removes its files on failure
                if verifying is not None and isinstance(checked := verifying.result(), Verified):
                    persist(checked)  # verified already: keep it for the rerun
            for future in persisting:
                with contextlib.suppress(BaseException):
                    future.result()
            raise
    return outcomes


def _write_tmp(job: ShardJob, pool: ThreadPoolExecutor, advance: ProgressFn | None,
               before_encoding: Callable[[], None] | None = None) -> Written:
    spec, out, root = job.spec, Path(job.out), Path(job.root)
    tmps = {name: temporary_path(out / name) for name in spec.files}
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
            stack.enter_context(no_space_is_an_error(out / data_folder(), spec.nbytes))
            for name, tmp in tmps.items():
                tmp.parent.mkdir(parents=True, exist_ok=True)
                stream = stack.enter_context(pa.OSFile(str(tmp), "wb"))
                columns = job.columns_of(name)
                subset = features if columns is None else datasets.Features(
                    {c: features[c] for c in columns})
                writers[name] = (EmbeddedParquetWriter(features=subset, stream=stream),
                                 columns)
            for k, rows in enumerate(groups):
                if k + 1 < len(groups):
                    prefetch(groups[k + 1], root)  # the kernel reads ahead while we encode
                reports += _write_group(writers, rows, job, features, root, pool,
                                        before_encoding if k == 0 else None)
                # Hand freed pages back to the OS now: the allocator would otherwise keep
                # them, and peak memory would grow with the number of row groups.
                pa.default_memory_pool().release_unused()
                if advance is not None:
                    advance(sum(r.nbytes for r in rows))
            for writer, _ in writers.values():
                writer.finalize(close_stream=False)
        return Written(job, tmps, reports)
    except BaseException:
        for writer, _ in writers.values():
            abandon(writer)
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise


def _write_group(writers: dict[str, tuple[ParquetWriter, list[str] | None]], rows: list[Row],
                 job: ShardJob, features: datasets.Features, root: Path,
                 pool: ThreadPoolExecutor,
                 before_encoding: Callable[[], None] | None = None) -> list[ImageReport]:
    """Read the group's files into one buffer (in parallel), then encode it into the full
    table and each config's file while the pool inspects the same bytes."""
    layout = Layout(rows, job.image_columns)
    buffer, view = blob_buffer(layout.total)
    slices = [(f, view[a:b]) for f, a, b in layout.files]
    _all_done([pool.submit(read_source, root / f.path, target, f) for f, target in slices])
    inspections = [pool.submit(inspect_image, target, f.path, job.full) for f, target in slices]
    try:
        if before_encoding is not None:
            before_encoding()
        group = table(rows, layout, buffer, features, job.image_columns, job.schema_row)
        for writer, columns in writers.values():
            part = group if columns is None else group.select(columns)  # no copy
            # One write per row group: datasets passes writer_batch_size as its row group size.
            writer.write_table(part, writer_batch_size=len(rows))
        del group
    finally:
        wait(inspections)  # they read the buffer: it may not go before they are done
    return [f.result() for f in inspections]


def _all_done(futures: list[Future[None]]) -> None:
    """Wait for every future (they write into a shared buffer), then raise the first error."""
    wait(futures)
    for f in futures:
        f.result()


# -- several processes, and progress -----------------------------------------------------------

_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _queue
    _queue = queue
    map_large_allocations()


def _worker(job: ShardJob, readers: int) -> Outcome:
    with threads(readers, "read") as pool:
        written = _write_tmp(job, pool, _queue.put if _queue is not None else None)
    return commit(written)


def _write_in_processes(jobs: Iterable[ShardJob], writers: int, readers: int,
                        advance: ProgressFn) -> list[Outcome]:
    queue = process_queue()
    try:
        with processes(writers, initializer=_init_worker, initargs=(queue,)) as pool:
            futures = [pool.submit(_worker, job, readers) for job in jobs]
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
