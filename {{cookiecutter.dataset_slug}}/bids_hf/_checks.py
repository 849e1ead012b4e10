"""Checks that run before any shard is written: cheap, and all of them, in one report.

Counts, required files, empty images, files that leave the dataset, rows too large for the
Hub's viewer, and personal information in what will be published (tables, sidecars, the
card's sources). What needs the images' bytes (integrity, header privacy) is checked while
they are read for their shards, in the same pass (``_inspect``, ``_shards``);
``image_checks`` turns those findings into the same kind of report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from ._phi import (
    Finding,
    privacy_checks,
    scan_card_sources,
    scan_sidecar,
    scan_tables,
    scan_unpublished_sidecars,
)
from ._plan import VIEWER_SCAN_LIMIT
from ._results import ValidationCheck
from ._rows import RowSet
from ._schema import Expected
from ._util import first_lines, human_bytes, shown, summarize_paths

REQUIRED_FILES = ("dataset_description.json",)


def pre_build_checks(rowset: RowSet, *, allow_phi: bool = False) -> list[ValidationCheck]:
    """Counts, required files, empty images, links that leave the dataset, and privacy
    findings in the tables, sidecars and card text that will be published."""
    return [_required_files(rowset), *_expected_counts(rowset), _empty_files(rowset),
            _inside_dataset(rowset), _viewable(rowset),
            *privacy_checks(published_findings(rowset), rowset.schema.privacy.allow,
                            allow_phi)]


def image_checks(rowset: RowSet, bad: list[str], findings: list[Finding], *, full: bool,
                 allow_phi: bool = False) -> list[ValidationCheck]:
    """The verdict on the images as they were read: intact, and their headers clean."""
    n = len(rowset.image_paths())
    checks = [ValidationCheck(
        name="images intact" + (" (decompressed in full)" if full else " (headers only)"),
        expected=n, actual=n - len(bad), passed=not bad,
        details=first_lines(bad, 20) + ("\nRe-export or re-download these files; they would fail "
                                   "to load for users. Nothing of them was published."
                                   if bad else ""))]
    header = privacy_checks(findings, rowset.schema.privacy.allow, allow_phi)[:2]
    for check in header:
        object.__setattr__(check, "name", check.name.replace("published", "in image headers"))
    return checks + header


def published_findings(rowset: RowSet) -> list[Finding]:
    """Privacy findings in the tables, sidecars and card text, each marked published or not."""
    index, schema = rowset.index, rowset.schema
    declared = {table: set(cols) for table, cols in schema.metadata_spec().items()}
    findings = scan_tables(index.root, declared)
    sidecar_findings, published_json = _published_sidecars(rowset)
    findings += sidecar_findings
    findings += scan_unpublished_sidecars(index.root, published_json)
    findings += scan_card_sources(index.root, index.description,
                                  index.data_dictionary("participants.tsv"))
    return findings


def published_sidecar_findings(rowset: RowSet) -> list[Finding]:
    """Findings in the sidecar text the schema publishes (what inference proposes to drop)."""
    return _published_sidecars(rowset)[0]


def _published_sidecars(rowset: RowSet) -> tuple[list[Finding], set[str]]:
    """Findings in the sidecar text that ``<column>_sidecar`` cells publish (after the keys
    schema.py drops), named by the JSON file each value comes from."""
    index, schema = rowset.index, rowset.schema
    drop = set(schema.privacy.drop)
    with_sidecar = {name for name, col in schema.image_columns.items() if col.sidecar}
    seen: set[tuple[str, str]] = set()
    findings: list[Finding] = []
    files: set[str] = set()
    for path, column in rowset.claimed.items():
        if column not in with_sidecar:
            continue
        f = index.file(path)
        if f is None:
            continue
        origin = index.sidecar_sources(f)
        files.update(origin.values())
        merged = {k: v for k, v in index.sidecar(f).items() if k not in drop}
        for finding in scan_sidecar("", merged, published=True):
            rel = origin.get(finding.field, path)
            if (rel, finding.field) not in seen:
                seen.add((rel, finding.field))
                findings.append(Finding(rel, finding.where, finding.what, finding.blocking,
                                        finding.field))
    return findings, files


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


def _empty_files(rowset: RowSet) -> ValidationCheck:
    empty = [f.path for r in rowset.rows for _, f in r.files() if f.size == 0]
    return ValidationCheck(
        name="no empty images", expected=0, actual=len(empty), passed=not empty,
        details=(f"{len(empty)} image(s) are 0 bytes: {summarize_paths(sorted(set(empty)))}. "
                 "Replace them with the real images (a DataLad/git-annex tree may need "
                 "`datalad get`).") if empty else "",
    )


def _viewable(rowset: RowSet) -> ValidationCheck:
    """Rows too large for the Hub's dataset viewer, which reads at most 300 MB at once (one
    row group of the columns it shows; a row is never split across row groups)."""
    big = [r for r in rowset.rows if r.nbytes > VIEWER_SCAN_LIMIT]
    lines = []
    for r in big:
        viewable = [c for c in rowset.schema.configs
                    if rowset.config_bytes(r, c) <= VIEWER_SCAN_LIMIT]
        also = f"; configs {', '.join(viewable)} still show it" if viewable else ""
        lines.append(f"{shown(r.key)}: {human_bytes(r.nbytes)}{also}")
    return ValidationCheck(
        name="rows the Hub's viewer can preview", expected=0, actual=len(big), passed=not big,
        severity="warning",
        details=first_lines(lines, 10) + (
            f"\nThe viewer cannot preview rows over {human_bytes(VIEWER_SCAN_LIMIT)} (the data "
            "load fine). Use row='image' (one image per row), or give the large modality a "
            "config of its own so the other configs stay viewable." if big else ""))


def _inside_dataset(rowset: RowSet) -> ValidationCheck:
    """Claimed files whose real path leaves the BIDS root (a symlink to elsewhere) are not
    published unless schema.py allows that folder; links into the dataset's own
    git-annex/DataLad object store are how those trees work, and pass."""
    root = rowset.index.root
    allowed = [os.path.realpath(root), *_annex_stores(root, rowset.index.pipelines),
               *(os.path.realpath(os.path.expanduser(p)) for p in rowset.schema.allow_outside)]
    outside: list[str] = []
    for path in rowset.image_paths():
        real = os.path.realpath(root / path)
        if not any(real == a or real.startswith(a.rstrip(os.sep) + os.sep) for a in allowed):
            outside.append(f"{shown(path)} -> {shown(real)}")
    return ValidationCheck(
        name="claimed files inside the dataset", expected=0, actual=len(outside),
        passed=not outside,
        details=first_lines(outside, 20) + (
            "\nThese are symbolic links to files outside the BIDS root. Copy the files into "
            "the dataset, or, if that folder is meant to be published with it, list it in "
            "schema.py: Schema(..., allow_outside=['/path/to/folder'])." if outside else ""))


def _annex_stores(root: Path, pipelines: Mapping[str, object]) -> Iterator[str]:
    """The git-annex object stores of the dataset and of its derivatives (DataLad
    subdatasets keep theirs in the superdataset's .git/modules)."""
    for folder in [root, *(root / "derivatives" / p for p in pipelines)]:
        git = folder / ".git"
        if git.is_file():  # "gitdir: ../.git/modules/x"
            text = git.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                git = (folder / text.split(":", 1)[1].strip())
        if git.is_dir():
            yield os.path.realpath(git / "annex" / "objects")


