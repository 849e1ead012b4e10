"""Checks that run before any shard is written: counts, required files, image integrity,
personal information.

Every check is cheap relative to the build except integrity, which decompresses every
claimed image in full (streaming, bounded memory): reading only the header lets a
truncated ``.nii.gz`` pass, and the failure would then surface for whoever downloads it.
The same pass scans each header for personal data (``_phi``). It runs in ``num_proc``
processes.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import nibabel as nib
import numpy as np

from ._phi import Finding, phi_checks, scan_nifti_header, scan_sidecars, scan_tables
from ._rows import RowSet
from ._schema import Expected
from ._util import summarize_paths
from ._validate import ValidationCheck

REQUIRED_FILES = ("dataset_description.json",)
_CHUNK = 4 << 20
_HEAD_LIMIT = 1 << 20  # header + extensions kept for the privacy scan


def pre_build_checks(rowset: RowSet, *, integrity: bool = True, num_proc: int = 1,
                     allow_phi: bool = False) -> list[ValidationCheck]:
    """Counts, required files, empty images, image integrity (full decompression unless
    ``integrity=False``) and personal-information findings (blocking unless ``allow_phi``)."""
    checks = [_required_files(rowset), *_expected_counts(rowset), _empty_files(rowset)]
    reports = _inspect_all(rowset, full=integrity, num_proc=num_proc)
    if integrity:
        checks.append(_integrity_check(reports))
    root = rowset.index.root
    findings = [*scan_tables(root), *scan_sidecars(root),
                *(f for _, r in reports for f in r.phi)]
    checks += phi_checks(findings, allowed=allow_phi)
    return checks


def _required_files(rowset: RowSet) -> ValidationCheck:
    missing = [name for name in REQUIRED_FILES if not (rowset.index.root / name).is_file()]
    return ValidationCheck(
        name="required files", expected=", ".join(REQUIRED_FILES),
        actual="missing: " + ", ".join(missing) if missing else "present", passed=not missing,
        details=("BIDS requires dataset_description.json at the root (Name, BIDSVersion, "
                 "License, Authors); the dataset card is built from it.") if missing else "",
    )


def _within(actual: int, expected: int, tolerance: float) -> bool:
    return abs(actual - expected) <= tolerance * expected


def _expected_counts(rowset: RowSet) -> list[ValidationCheck]:
    exp: Expected = rowset.schema.expected
    checks: list[ValidationCheck] = []
    tol = exp.tolerance
    suffix = f" (±{tol:.0%})" if tol else ""

    def count_check(name: str, want: int, have: int, hint: str) -> ValidationCheck:
        ok = _within(have, want, tol)
        return ValidationCheck(
            name=name, expected=f"{want}{suffix}", actual=have, passed=ok,
            details="" if ok else f"Expected {want}{suffix}, found {have}. {hint}")

    if exp.subjects is not None:
        have = len({r.subject for r in rowset.rows})
        checks.append(count_check("subjects", exp.subjects, have,
                                  "Update expected= in schema.py if the data are right."))
    if exp.rows is not None:
        checks.append(count_check("rows", exp.rows, len(rowset.rows),
                                  "Update expected= in schema.py if the data are right."))
    for column, want in exp.files.items():
        if column not in rowset.image_columns:
            checks.append(ValidationCheck(name=f"files in {column}", expected=want, actual="?",
                                          passed=False, details=f"expected.files names {column!r}, "
                                          "which is not an image column."))
            continue
        have = rowset.column_files(column)
        checks.append(count_check(f"files in {column}", want, have,
                                  "A query that misses files loses data silently; check it "
                                  "against the file names, or update the expectation."))
    return checks


def _claimed(rowset: RowSet) -> list[str]:
    return sorted({f.path for r in rowset.rows for _, f in r.files()})


def _empty_files(rowset: RowSet) -> ValidationCheck:
    empty = [f.path for r in rowset.rows for _, f in r.files() if f.size == 0]
    return ValidationCheck(
        name="no empty images", expected=0, actual=len(empty), passed=not empty,
        details=(f"{len(empty)} image(s) are 0 bytes: {summarize_paths(sorted(set(empty)))}. "
                 "Replace them with the real images (a DataLad/git-annex tree may need "
                 "`datalad get`).") if empty else "",
    )


def _inspect_all(rowset: RowSet, full: bool, num_proc: int) -> list[tuple[str, NiftiReport]]:
    paths = [p for p in _claimed(rowset) if (f := rowset.index.file(p)) is not None and f.size > 0]
    root = rowset.index.root
    jobs = [(str(root / p), p, full) for p in paths]
    return list(zip(paths, _map(_inspect_job, jobs, num_proc), strict=True))


def _integrity_check(reports: list[tuple[str, NiftiReport]]) -> ValidationCheck:
    problems = [f"{rel}: {r.problem}" for rel, r in reports if r.problem]
    return ValidationCheck(
        name="images decompress and parse", expected=len(reports),
        actual=len(reports) - len(problems), passed=not problems,
        details="\n".join(problems[:20]) + (f"\n... {len(problems) - 20} more" if len(problems) > 20 else "")
        + ("\nRe-export or re-download these files; they would fail to load for users."
           if problems else ""),
    )


_T = TypeVar("_T")
_R = TypeVar("_R")


def _map(fn: Callable[[_T], _R], items: list[_T], num_proc: int) -> list[_R]:
    if num_proc <= 1 or len(items) < 8:
        return [fn(i) for i in items]
    with ProcessPoolExecutor(max_workers=num_proc) as pool:
        return list(pool.map(fn, items, chunksize=max(1, len(items) // (num_proc * 8))))


@dataclass(frozen=True)
class NiftiReport:
    problem: str | None  # None: a complete NIfTI-1 image
    phi: tuple[Finding, ...] = ()


def _inspect_job(job: tuple[str, str, bool]) -> NiftiReport:
    return inspect_nifti(*job)


def check_nifti(path: str) -> str | None:
    """``None`` if the file is a complete NIfTI-1 image, else what is wrong with it."""
    problem = inspect_nifti(path, path, full=True).problem
    return None if problem is None else f"{path}: {problem}"


def inspect_nifti(path: str, rel: str, full: bool = True) -> NiftiReport:
    """Decompress the image (all of it when ``full``; else its first MB), check that it is a
    complete NIfTI-1 file, and scan its header text and extensions for personal data."""
    head = bytearray()
    total = 0
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            if path.endswith(".gz") and not gz:
                return NiftiReport("named .gz but not gzip-compressed")
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            while chunk := stream.read(_CHUNK):
                if len(head) < _HEAD_LIMIT:
                    head += chunk[: _HEAD_LIMIT - len(head)]
                total += len(chunk)
                if not full and len(head) >= _HEAD_LIMIT:
                    break
    except (OSError, EOFError, zlib.error) as err:
        return NiftiReport(f"cannot be decompressed ({type(err).__name__}: {err}); "
                           "truncated or corrupt")
    if len(head) < 348:
        return NiftiReport(f"{total} bytes, too short for a NIfTI header")
    sizeof_hdr_le = struct.unpack("<i", bytes(head[:4]))[0]
    sizeof_hdr_be = struct.unpack(">i", bytes(head[:4]))[0]
    if 540 in (sizeof_hdr_le, sizeof_hdr_be):
        return NiftiReport("NIfTI-2; datasets' Nifti feature decodes NIfTI-1 only. Convert it "
                           "(e.g. nibabel: nib.Nifti1Image(img.dataobj, img.affine, img.header))")
    if 348 not in (sizeof_hdr_le, sizeof_hdr_be):
        return NiftiReport(f"not a NIfTI file (header size field is {sizeof_hdr_le})")
    try:
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(head[:348])))
        shape = header.get_data_shape()
        itemsize = header.get_data_dtype().itemsize
        offset = int(header.get_data_offset())
    except Exception as err:  # noqa: BLE001  (nibabel raises several types for bad headers)
        return NiftiReport(f"NIfTI header does not parse ({type(err).__name__}: {err})")
    phi = tuple(scan_nifti_header(rel, bytes(head[: max(offset, 352)])))
    needed = offset + int(np.prod(shape, dtype=np.int64)) * itemsize
    if full and total < needed:
        return NiftiReport(f"truncated, {total} bytes of image data where the header "
                           f"promises {needed}", phi)
    return NiftiReport(None, phi)
