"""Rows: the schema applied to an index. One row per subject, session or image.

This module groups the claimed files into rows and assembles each row from the modules
that own its parts; everything that could lose data on the way is reported as a check:

* a ``one(...)`` column matching several files in a row is an error naming every file and
  the entities they differ in (never "take the first", never None);
* images in each list cell are in natural order (run-2 before run-10);
* the other cells come from ``_cells`` (kept entities, companions, sidecars), ``_metadata``
  (table values) and ``_splits``; ``_coverage`` reports what no column claims;
  ``_features`` gives the resulting columns their types.

A ``SchemaError`` or ``TableError`` is raised only when the schema or a table cannot be used
at all; every other problem is a check on the result, so one run reports all of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import datasets

from ._cells import cell_values, companions_check, kept_entities
from ._coverage import coverage_checks
from ._features import features
from ._index import SESSION_OF, BidsFile, BidsIndex
from ._metadata import load_metadata
from ._results import ValidationCheck
from ._schema import IMAGE_COLUMN, Column, Schema
from ._splits import DEFAULT_SPLIT, assign_splits, ordered
from ._util import first_lines, natural_key, shown


@dataclass
class Row:
    """One example before its image bytes are read."""

    key: str  # unique and deterministic: "sub-01_ses-2", "sub-01", or a file path
    subject: str
    session: str | None
    split: str
    images: dict[str, list[BidsFile]]  # image column -> its files, natural order
    values: dict[str, Any]  # every other column, already typed
    prefixes: tuple[str, str] = ("sub", "ses")  # ("tpl", "cohort") in a template dataset

    @property
    def nbytes(self) -> int:
        return sum(max(f.size, 0) for files in self.images.values() for f in files)

    def files(self) -> Iterator[tuple[str, BidsFile]]:
        for column, files in self.images.items():
            for f in files:
                yield column, f


@dataclass
class RowSet:
    """All rows of a dataset with their features, and what assembling them found."""

    schema: Schema
    index: BidsIndex
    rows: list[Row]
    features: datasets.Features
    image_columns: dict[str, bool]  # column -> is a list column
    checks: list[ValidationCheck] = field(default_factory=list)
    claimed: dict[str, str] = field(default_factory=dict)  # path -> column
    unclaimed: list[str] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        return ordered(r.split for r in self.rows)

    def rows_of(self, split: str) -> list[Row]:
        return [r for r in self.rows if r.split == split]

    def image_paths(self) -> list[str]:
        """Every image the rows hold, each once, sorted."""
        return sorted({f.path for r in self.rows for _, f in r.files()})

    def column_files(self, column: str) -> int:
        return sum(len(r.images.get(column, ())) for r in self.rows)

    @property
    def config_columns(self) -> dict[str, list[str]]:
        """Each config's columns, in feature order: the ids, the columns it names, and the
        columns aligned with its image columns (``dwi`` brings ``dwi_bval``, ``dwi_run``...)."""
        out: dict[str, list[str]] = {}
        for name, named in self.schema.configs.items():
            wanted = set(named) | {"subject_id", "session_id"}
            for column in named:
                if column in self.image_columns:
                    wanted |= {f for f in self.features if f.startswith(f"{column}_")}
            out[name] = [f for f in self.features if f in wanted]
        return out

    def config_bytes(self, row: Row, config: str) -> int:
        """Bytes of the images a row holds in a config's columns."""
        columns = set(self.config_columns[config])
        return sum(max(f.size, 0) for c, files in row.images.items() if c in columns
                   for f in files)


def assemble_rows(index: BidsIndex, schema: Schema) -> RowSet:
    """Apply ``schema`` to ``index``. Problems become checks on the result, never exceptions,
    so one run reports all of them; ``SchemaError``/``TableError`` are raised only when the
    schema or a table cannot be used at all."""
    columns = schema.image_columns
    claims: dict[str, list[BidsFile]] = {name: [] for name in columns}
    claimed_by: dict[str, list[str]] = defaultdict(list)
    for f in index.files:
        for name, col in columns.items():
            if col.query.matches(f):
                claims[name].append(f)
                claimed_by[f.path].append(name)

    grouped = _group(schema, claims)
    row_keys = _row_keys(schema, index, grouped)
    tables, checks = load_metadata(index, schema)
    keep = kept_entities(schema, claims)

    prefixes = (index.subject_entity, SESSION_OF[index.subject_entity])
    rows: list[Row] = []
    ambiguous: list[str] = []
    missing_companions: list[str] = []
    for key in row_keys:
        sub, ses, path = key
        images: dict[str, list[BidsFile]]
        if schema.row == "image":
            file = index.file(path)  # type: ignore[arg-type]
            assert file is not None
            images = {IMAGE_COLUMN: [file]}
        else:
            images = {name: grouped.get((name, sub, ses), []) for name in columns}
            for name, col in columns.items():
                if not col.many and len(images[name]) > 1:
                    ambiguous.append(_ambiguity(name, col, sub, ses, images[name]))
        values = cell_values(schema, index, images, keep, claimed_by, missing_companions)
        values.update(tables.values(schema, sub, ses))
        row_id = f"{prefixes[0]}-{sub}" + (f"_{prefixes[1]}-{ses}" if ses else "")
        rows.append(Row(key=path or row_id, subject=sub, session=ses, split=DEFAULT_SPLIT,
                        images=images, values=values, prefixes=prefixes))

    splits, split_checks = assign_splits(schema, [(r.key, r.subject, r.values) for r in rows])
    for row, split in zip(rows, splits, strict=True):
        row.split = split
    checks += split_checks
    checks.append(ValidationCheck(
        name="one file per single-valued cell", expected=0, actual=len(ambiguous),
        passed=not ambiguous, details=first_lines(ambiguous, 20),
    ))
    checks += companions_check(schema, missing_companions)
    coverage, unclaimed = coverage_checks(schema, index, claims, claimed_by)
    checks += coverage
    return RowSet(
        schema=schema, index=index, rows=rows, features=features(schema, keep),
        image_columns={IMAGE_COLUMN: False} if schema.row == "image"
        else {name: col.many for name, col in columns.items()},
        checks=checks, claimed={path: names[0] for path, names in claimed_by.items()},
        unclaimed=unclaimed,
    )


# -- grouping ---------------------------------------------------------------------------

Key = tuple[str, str | None, str | None]  # subject, session, path (image rows)


def _group(
    schema: Schema, claims: dict[str, list[BidsFile]]
) -> dict[tuple[str, str, str | None], list[BidsFile]]:
    cells: dict[tuple[str, str, str | None], list[BidsFile]] = defaultdict(list)
    for name, files in claims.items():
        for f in files:
            ses = f.session if schema.row == "session" else None
            cells[(name, f.subject, ses)].append(f)
    for files in cells.values():
        files.sort(key=BidsFile.sort_key)  # natural path order: run-2 before run-10
    return cells


def _row_keys(
    schema: Schema, index: BidsIndex, cells: dict[tuple[str, str, str | None], list[BidsFile]]
) -> list[Key]:
    if schema.row == "image":
        paths = sorted({f.path for files in cells.values() for f in files}, key=natural_key)
        files = [(p, index.file(p)) for p in paths]
        return [(f.subject, f.session, p) for p, f in files if f is not None]  # all claimed
    keys: set[tuple[str, str | None]] = set()
    for sub in index.subjects:
        sessions = index.sessions.get(sub) or []
        if schema.row == "session" and sessions:
            keys.update((sub, ses) for ses in sessions)
        else:
            keys.add((sub, None))
    keys.update((sub, ses) for (_, sub, ses) in cells)  # derivatives-only subjects/sessions
    in_order = sorted(keys, key=lambda k: (natural_key(k[0]), natural_key(k[1] or "")))
    return [(sub, ses, None) for sub, ses in in_order]


def _ambiguity(name: str, col: Column, sub: str, ses: str | None, files: list[BidsFile]) -> str:
    where = f"sub-{sub}" + (f" ses-{ses}" if ses else "")
    differ = sorted(
        {k for f in files for k in f.entities if len({str(g.entities.get(k)) for g in files}) > 1}
        - {"ext"}
    )
    listing = "\n".join(f"    {shown(f.path)}" for f in files)
    hint = f"They differ in {', '.join(differ)}. " if differ else ""
    narrow = f"add e.g. {differ[0]}={files[0].entities.get(differ[0])!r} to its query" if differ \
        else "narrow its query"
    return (
        f"Column {name!r} is one(...) but matched {len(files)} files in {where}:\n{listing}\n"
        f"  {hint}Declare it many(...) to keep them all, or {narrow}."
    )


def row_ids(row: Row, level: str) -> dict[str, Any]:
    """The identifying cells of a row: ``sub-XX`` / ``ses-YY`` as written in the tree (``tpl-``
    and ``cohort-`` in a template dataset)."""
    ids: dict[str, Any] = {"subject_id": f"{row.prefixes[0]}-{row.subject}"}
    if level != "subject":
        ids["session_id"] = f"{row.prefixes[1]}-{row.session}" if row.session else None
    return ids
