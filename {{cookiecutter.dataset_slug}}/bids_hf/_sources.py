"""Source images, read once: straight into the buffer that embeds them, only as indexed.

The shard writer reads every claimed file exactly once, into its place in a row group's
buffer; the checks and the hash then look at those same bytes. A file whose size, mtime or
ctime differ from what the index saw changed after the plan was made: reading it stops the
run (``SourceChangedError``) rather than ship bytes nobody planned, and the pipeline asks
again once the build is over (``changed_since_indexed``). While a row group is encoded,
the kernel is asked to read the next one's files ahead (cold-cache builds).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import InputError, SourceChangedError
from ._index import BidsFile
from ._rows import Row, RowSet
from ._util import shown


def changed_since_indexed(rowset: RowSet) -> list[str]:
    """Claimed files whose size, mtime or ctime are no longer what the index saw."""
    changed = []
    for path in rowset.image_paths():
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


def read_source(path: Path, target: memoryview, f: BidsFile) -> None:
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


def prefetch(rows: list[Row], root: Path) -> None:
    """Ask the kernel to start reading these rows' files (the next row group's)."""
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


def _same_file(st: os.stat_result, f: BidsFile) -> bool:
    if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
        return False
    return not f.ctime_ns or st.st_ctime_ns == f.ctime_ns
