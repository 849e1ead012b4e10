"""Work in parallel, one way: threads for work that releases the GIL, spawned processes past that.

Reading files, inflating gzip, hashing and Parquet encoding all release the GIL, so the
threads of one process share the CPUs: the image checks, the shard writer's reads and
inspections, and the hashes that decide whether a shard is reused all run in ``threads``.
One process encodes Parquet on about one CPU, so from six CPUs on the shard writer also
runs several ``processes``. Those are *spawned*, never forked: a forked child inherits the
locks of Arrow's (and the allocator's) running threads but not the threads, and can wait on
them forever.

Threads are named ``bids-hf-<what>`` so a stack dump says which step they belong to.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.context import SpawnContext
from typing import Any, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: what SLURM or taskset granted)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not every platform has affinity masks
        return os.cpu_count() or 1


def threads(workers: int, what: str) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads for GIL-free work (use it as a context manager)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"bids-hf-{what}")


def thread_map(call: Callable[[_T], _R], items: Iterable[_T], workers: int, what: str
               ) -> list[_R]:
    """``[call(item) for item in items]``, run by ``workers`` threads, results in order."""
    with threads(workers, what) as pool:
        return list(pool.map(call, items))


def in_background(call: Callable[[], _R], what: str) -> Future[_R]:
    """Run a slow, independent ``call`` (an external validator) beside the main work. The
    thread is a daemon: a run that stops early does not wait for it."""
    future: Future[_R] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as err:  # noqa: BLE001  (handed to whoever waits)
            future.set_exception(err)

    threading.Thread(target=run, name=f"bids-hf-{what}", daemon=True).start()
    return future


def processes(workers: int, initializer: Callable[..., None] | None = None,
              initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (use it as a context manager)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=_spawn(),
                               initializer=initializer, initargs=initargs)


def process_queue() -> Any:
    """A queue that spawned workers can put into (e.g. progress), for ``initargs``."""
    return _spawn().Queue()


def _spawn() -> SpawnContext:
    return multiprocessing.get_context("spawn")
