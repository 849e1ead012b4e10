"""Small helpers shared by every stage: natural order, byte sizes, hashing, durable renames,
how paths and lists are shown in messages, and glibc's allocator setting."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

_DIGITS = re.compile(r"(\d+)")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def map_large_allocations() -> None:
    """Make glibc map every allocation of 1 MB or more, and unmap it when it is freed.

    By default glibc raises its mmap threshold after large blocks are freed (up to 32 MB)
    and then serves large blocks from its heaps, which keep them: a build's peak memory grew
    with the dataset (+10% on a tree 4x larger, measured). A fixed threshold turns that off.
    Process-wide and idempotent (the pipeline calls it whichever door it came through); a
    no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key that orders embedded numbers numerically: run-2 before run-10.

    ``re.split`` with a capturing group alternates text and digits and always starts with
    text, so keys of different strings stay comparable position by position.
    """
    parts = _DIGITS.split(text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def parse_size(value: str | int) -> int:
    """``"500MB"`` -> 500_000_000; ``"1GiB"`` -> 2**30; ints pass through."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"Not a size: {value!r}. Use e.g. 500MB, 2GB or 1GiB.")
    number, unit = float(match.group(1)), match.group(2).upper()
    binary = "I" in unit
    letter = unit.replace("I", "").replace("B", "")
    factor = (1024 ** "KMGT".index(letter) * 1024) if binary and letter else _UNITS[letter]
    return int(number * factor)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def sha256_file(path: str | os.PathLike[str], chunk: int = 4 << 20) -> str:
    """sha256 of a file, read into one reused buffer (no allocation per block)."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def sha256_mapped(path: str | os.PathLike[str], window: int = 8 << 20) -> str:
    """sha256 of a file from its pages in the page cache, mapped a window at a time rather
    than copied through read() (for files just written: what is hashed is what the kernel
    will write; memory stays at one window)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for start in range(0, size, window):
            length = min(window, size - start)
            with mmap.mmap(f.fileno(), length, access=mmap.ACCESS_READ, offset=start) as part:
                digest.update(part)
    return digest.hexdigest()


def sha256_text(parts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds the new name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def summarize_paths(paths: list[str], limit: int = 5) -> str:
    """One line naming the first few paths and how many more there are."""
    listed = ", ".join(shown(p) for p in paths[:limit])
    return listed + (f" (... and {len(paths) - limit} more)" if len(paths) > limit else "")


def shown(text: str) -> str:
    """``text`` for a message: control characters (a newline in a file name...) escaped, so
    they cannot break the layout of what is printed or pass for something else."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def first_lines(lines: Sequence[str], limit: int = 20, indent: str = "") -> str:
    """The first ``limit`` lines, then how many more there are: how every list is cut.
    ``indent`` starts every line."""
    more = [f"... and {len(lines) - limit} more"] if len(lines) > limit else []
    return "\n".join(indent + line for line in [*lines[:limit], *more])
