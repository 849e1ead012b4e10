"""Coverage: no file under the root vanishes silently between the tree and the rows.

Reported, each as one check naming the files: every NIfTI that no column claims (grouped by
kind, an error with ``strict=True``), columns that match no file, files claimed by two
columns (their bytes would be stored twice), claimed files that cannot be read (annexed
content not fetched), what the index skipped, and NIfTI files ``.bidsignore`` excludes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from ._index import BidsFile, BidsIndex
from ._results import ValidationCheck
from ._schema import Schema
from ._util import first_lines, natural_key, shown, summarize_paths


def coverage_checks(
    schema: Schema, index: BidsIndex, claims: Mapping[str, list[BidsFile]],
    claimed_by: Mapping[str, list[str]],
) -> tuple[list[ValidationCheck], list[str]]:
    """The coverage checks, and the NIfTI files no column claims (natural order)."""
    ignored = set(index.ignored)
    unclaimed = [p for p in index.nifti_on_disk if p not in claimed_by and p not in ignored]
    excluded = [p for p in index.nifti_on_disk if p not in claimed_by and p in ignored]
    checks = [
        _unclaimed(schema, index, unclaimed),
        _columns_match(schema, claims),
        _no_file_twice(claimed_by),
        _readable(index, claimed_by),
    ]
    if index.problems:
        checks.append(ValidationCheck(
            name="dataset files read", expected=0, actual=len(index.problems), passed=False,
            severity="warning", details=first_lines(index.problems, 10)))
    if excluded:
        checks.append(ValidationCheck(
            name="NIfTI excluded by .bidsignore", expected="-", actual=len(excluded),
            passed=False, severity="info",
            details=f"{len(excluded)} NIfTI excluded by .bidsignore: not published:\n"
                    + _by_kind(excluded, index) + "\nA glob column claims them if they "
                    "should be, e.g. many('anat/*_FLASH.nii.gz')."))
    return checks, unclaimed


def _unclaimed(schema: Schema, index: BidsIndex, unclaimed: list[str]) -> ValidationCheck:
    outside = [p for p in unclaimed if index.file(p) is None]
    loose = [p for p in unclaimed if (f := index.file(p)) is not None and not f.bids_named]
    details = ""
    if unclaimed:
        details = (f"{len(unclaimed)} NIfTI file(s) under the root are in no column:\n"
                   + _by_kind(unclaimed, index) + "\n")
        if loose:
            details += (f"{len(loose)} of them have non-BIDS names; a glob column can claim "
                        f"them: {summarize_paths(loose)}\n")
        if outside:
            details += (f"{len(outside)} of them are outside any sub-* folder, so no row can "
                        f"hold them: {summarize_paths(outside)}\n")
        details += ("Add a column for them, list them in .bidsignore, or accept the loss"
                    + ("." if schema.strict else
                       " (--strict, or strict=True in the schema, makes this an error)."))
    return ValidationCheck(
        name="every NIfTI claimed by a column", expected=0, actual=len(unclaimed),
        passed=not unclaimed, details=details,
        severity="error" if schema.strict else "warning",
    )


def _columns_match(schema: Schema, claims: Mapping[str, list[BidsFile]]) -> ValidationCheck:
    empty = [name for name, files in claims.items() if not files]
    return ValidationCheck(
        name="every column matches files", expected=0, actual=len(empty), passed=not empty,
        details="\n".join(f"Column {n!r} ({schema.image_columns[n].query.describe()}) matched "
                          "no file. Check the query against a file name." for n in empty),
    )


def _no_file_twice(claimed_by: Mapping[str, list[str]]) -> ValidationCheck:
    twice = sorted((p for p, names in claimed_by.items() if len(names) > 1), key=natural_key)
    return ValidationCheck(
        name="no file in two columns", expected=0, actual=len(twice), passed=not twice,
        details=first_lines([f"{shown(p)} is in columns {', '.join(claimed_by[p])} (its bytes "
                             "are stored twice)" for p in twice], 10),
        severity="warning",
    )


def _readable(index: BidsIndex, claimed_by: Mapping[str, list[str]]) -> ValidationCheck:
    unreadable = [p for p in index.unreadable if p in claimed_by]
    return ValidationCheck(
        name="claimed files readable", expected=0, actual=len(unreadable), passed=not unreadable,
        details=(f"Cannot read {summarize_paths(unreadable)}. Broken symlinks usually mean "
                 "annexed content was not fetched: run `datalad get` (or `git annex get`) "
                 "on them.") if unreadable else "",
    )


def _by_kind(paths: list[str], index: BidsIndex) -> str:
    """One line per kind of file (pipeline, datatype, suffix): count and an example."""
    groups: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        f = index.file(p)
        if f is None:
            kind = "outside subject folders"
        else:
            kind = "/".join(x for x in (f"derivatives/{f.pipeline}" if f.pipeline else "",
                                        str(f.entities.get("datatype", "")),
                                        str(f.entities.get("suffix", ""))) if x)
        groups[kind].append(p)
    return "\n".join(f"  {kind}: {len(files)} (e.g. {shown(files[0])})"
                     for kind, files in sorted(groups.items(), key=lambda kv: -len(kv[1])))
