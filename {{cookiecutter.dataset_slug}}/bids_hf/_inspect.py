"""What one image is, judged from its bytes in memory: hash, integrity, header, privacy.

The shard writer reads every claimed file once, into the buffer it embeds; this module looks
at that same buffer, so the bytes checked are the bytes shipped:

* sha256 of the file as read (recorded in the manifest; the written shard is read back and
  compared with it);
* the NIfTI-1 header, parsed by nibabel from the first decompressed bytes: a file that is not
  NIfTI, or is NIfTI-2 (``datasets`` decodes NIfTI-1 only), is refused — this part always runs,
  so no flag lets a non-image into a shard;
* with ``full=True``, the whole gzip stream is inflated, member after member, the decompressor
  checking CRC and length, and it must hold exactly what the header promises. Inflating stops
  at that size plus a small slack, so a file that would inflate to far more (a decompression
  bomb, a lying header) is refused without inflating the rest;
* the header's text fields and extensions are scanned for personal data (``_phi``).

Inflating uses python-isal when it is installed (about 2x the standard library here, and it
passes the same corruption tests: truncation, flipped bits, wrong CRC or length, trailing
garbage, several members); otherwise the standard library's zlib. libdeflate was faster still
but accepted truncated streams and wrong lengths, so it is not used. All of these release the
GIL, so a thread pool inflates while pyarrow encodes.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import struct
import types
import zlib
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np

from ._phi import Finding, scan_nifti_header

_zlib: types.ModuleType
try:  # optional: faster inflate, same results
    from isal import isal_zlib as _zlib

    INFLATE_LIBRARY = "isal"
except ImportError:  # pragma: no cover - exercised where isal is not installed
    _zlib = zlib
    INFLATE_LIBRARY = "zlib"
_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _zlib.error)

_HEAD = 1 << 20  # decompressed bytes kept for the header, its extensions and the privacy scan
_IN_CHUNK = 1 << 20  # compressed bytes fed per call: unconsumed input is copied, keep it small
_OUT_CHUNK = 4 << 20  # decompressed bytes produced per call: bounds memory
_SLACK = 1 << 20  # tolerated bytes beyond the header's promise before calling it a bomb


@dataclass(frozen=True)
class ImageReport:
    """One image as read. ``problem`` is ``None`` for a complete NIfTI-1 file."""

    path: str  # BIDS-relative
    size: int
    sha256: str
    problem: str | None = None
    findings: tuple[Finding, ...] = ()
    shape: tuple[int, ...] = ()
    nbytes: int = 0  # what the header promises once decompressed (offset + data)


def inspect_image(data: memoryview | bytes, rel: str, full: bool = True) -> ImageReport:
    """Hash ``data`` (the file's bytes), check it is a complete NIfTI-1 image (inflating it all
    when ``full``), and scan its header for personal data."""
    view = memoryview(data)
    digest = hashlib.sha256(view).hexdigest()
    report = _examine(view, rel, full)
    return ImageReport(path=rel, size=len(view), sha256=digest, **report)


def inspect_file(path: str | os.PathLike[str], rel: str, full: bool = True) -> ImageReport:
    """``inspect_image`` on a file, mapped rather than read into memory (for checks that do
    not build shards: the generated repo's data test, the review page)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return ImageReport(path=rel, size=0, sha256=hashlib.sha256(b"").hexdigest(),
                               problem="0 bytes")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return inspect_image(view, rel, full)
            finally:
                view.release()


def check_nifti(path: str) -> str | None:
    """``None`` if the file at ``path`` is a complete NIfTI-1 image, else what is wrong."""
    problem = inspect_file(path, path, full=True).problem
    return None if problem is None else f"{path}: {problem}"


def _examine(view: memoryview, rel: str, full: bool) -> dict[str, Any]:
    gz = bytes(view[:2]) == b"\x1f\x8b"
    if rel.endswith(".gz") and not gz:
        return {"problem": "named .gz but not gzip-compressed"}
    stream = _Inflater(view) if gz else _Plain(view)
    try:
        head = stream.read(_HEAD)
        if len(head) < 348:
            return {"problem": f"{len(head)} bytes{' once decompressed' if gz else ''}, too "
                               "short for a NIfTI header"}
        problem, header = _parse_header(head)
        if header is None:
            return {"problem": problem}
        shape = tuple(int(n) for n in header.get_data_shape())
        offset = int(header.get_data_offset())
        promised = offset + int(np.prod(shape, dtype=np.int64)) * header.get_data_dtype().itemsize
        findings = tuple(scan_nifti_header(rel, head[: max(offset, 352)]))
        result: dict[str, Any] = {"findings": findings, "shape": shape, "nbytes": promised}
        if not full:
            return result
        total = len(head) + stream.skip(promised + _SLACK - len(head))
        if total > promised + _SLACK or not stream.at_end():
            result["problem"] = (
                f"decompresses to more than the {promised} bytes its header promises; refusing "
                "it (a corrupt header or a decompression bomb)" if gz else
                f"is {len(view)} bytes where its header describes {promised}; a corrupt header")
        elif total < promised:
            result["problem"] = (f"truncated, {total} bytes of image data where the header "
                                 f"promises {promised}")
        return result
    except _ERRORS as err:
        return {"problem": f"cannot be decompressed ({type(err).__name__}: {err}); "
                           "truncated or corrupt"}
    except _Corrupt as err:
        return {"problem": str(err)}


def _parse_header(head: bytes) -> tuple[str | None, Any]:
    sizeof_le, sizeof_be = struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]
    if 540 in (sizeof_le, sizeof_be):
        return ("NIfTI-2; datasets' Nifti feature decodes NIfTI-1 only. Convert it "
                "(e.g. nibabel: nib.Nifti1Image(img.dataobj, img.affine, img.header))"), None
    if 348 not in (sizeof_le, sizeof_be):
        return f"not a NIfTI file (header size field is {sizeof_le})", None
    try:
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(head[:348]))
        header.get_data_shape()
        header.get_data_dtype()
        header.get_data_offset()
    except Exception as err:  # noqa: BLE001  (nibabel raises several types for bad headers)
        return f"NIfTI header does not parse ({type(err).__name__}: {err})", None
    return None, header


class _Corrupt(Exception):
    """The gzip stream is malformed in a way the decompressor does not raise for."""


class _Plain:
    """An uncompressed ``.nii``: the bytes are the image."""

    def __init__(self, view: memoryview) -> None:
        self.view, self.pos = view, 0

    def read(self, n: int) -> bytes:
        out = bytes(self.view[self.pos:self.pos + n])
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        step = max(0, min(n + 1, len(self.view) - self.pos))  # +1: see past the promise
        self.pos += step
        return step

    def at_end(self) -> bool:
        return self.pos >= len(self.view)


class _Inflater:
    """Streaming gzip inflate over an in-memory file: members in sequence, bounded output per
    call, trailing zero padding tolerated (as Python's gzip module does), anything else after
    the last member is corruption."""

    def __init__(self, view: memoryview) -> None:
        self.view, self.pos = view, 0
        self.dec: Any = _zlib.decompressobj(wbits=31)
        self.tail = b""  # input the decompressor left unconsumed (bounded by _IN_CHUNK)
        self.done = False

    def _next(self, limit: int) -> bytes:
        """Up to ``limit`` decompressed bytes; b"" only at the end of the last member."""
        while not self.done:
            if self.dec.eof:
                rest = self.dec.unused_data + bytes(self.view[self.pos:self.pos + 8])
                if not rest:
                    self.done = True
                    break
                if not any(rest) and not any(self.view[self.pos:]):
                    self.done = True  # zero padding after the last member
                    break
                if rest[:2] != b"\x1f\x8b":
                    raise _Corrupt("unexpected bytes after the end of the gzip stream; "
                                   "truncated or corrupt")
                self.view_unused(self.dec.unused_data)
                self.dec = _zlib.decompressobj(wbits=31)
                continue
            chunk: bytes | memoryview
            if self.tail:
                chunk, self.tail = self.tail, b""
            else:
                chunk = self.view[self.pos:self.pos + _IN_CHUNK]
                self.pos += len(chunk)
                if not chunk:
                    raise _Corrupt("the gzip stream ends early; truncated or corrupt")
            out = self.dec.decompress(chunk, limit)
            self.tail = self.dec.unconsumed_tail
            if out:
                return bytes(out)
        return b""

    def view_unused(self, unused: bytes) -> None:
        """Step back so the next member starts at the unused bytes of the previous one."""
        self.pos -= len(unused)
        self.tail = b""

    def read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n and (piece := self._next(min(_OUT_CHUNK, n - got))):
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Inflate and discard up to ``n + 1`` bytes (one more shows there is more)."""
        got = 0
        while got <= n and (piece := self._next(min(_OUT_CHUNK, n + 1 - got))):
            got += len(piece)
        return got

    def at_end(self) -> bool:
        return self.done or not self._next(1)
