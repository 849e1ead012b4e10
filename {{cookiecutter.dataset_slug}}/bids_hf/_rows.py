"""Rows: the schema applied to an index. One row per subject, session or image.

This module owns the mapping from files to cells and everything that can silently lose data
on the way, reported as validation checks instead:

* a ``one(...)`` column matching several files in a row is an error naming every file and
  the entities they differ in (never "take the first", never None);
* every NIfTI under the root that no column claimed is listed (coverage report);
* metadata rows without a folder and folders without metadata are reported;
* list cells are in natural order (run-2 before run-10), with aligned entity lists.

Small companion values (b-values, sidecars, metadata) are read here, so their errors surface
before any heavy work; image bytes are read only by the shard writer.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import datasets
from datasets import List, Nifti, Value

from ._entities import entity_order, index_entities
from ._index import SESSION_OF, BidsFile, BidsIndex
from ._results import ValidationCheck
from ._schema import Column, CompanionKind, Schema, SchemaError
from ._tables import SESSIONS_TABLE, TableError, TableRow, load_table
from ._util import first_lines, natural_key, shown, summarize_paths

IMAGE_COLUMN = "nifti"  # the image column of row="image" datasets
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # what datasets accepts as a split name
_NOT_KEPT = {"sub", "ses", "tpl", "cohort", "ext"}  # identify the row or format, not the item


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
        names = {r.split for r in self.rows}
        order = ["train", "validation", "test"]
        return sorted(names, key=lambda s: (order.index(s) if s in order else len(order), s))

    def rows_of(self, split: str) -> list[Row]:
        return [r for r in self.rows if r.split == split]

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
    checks: list[ValidationCheck] = []
    claims: dict[str, list[BidsFile]] = {name: [] for name in columns}
    claimed_by: dict[str, list[str]] = defaultdict(list)
    for f in index.files:
        for name, col in columns.items():
            if col.query.matches(f):
                claims[name].append(f)
                claimed_by[f.path].append(name)

    cells = _group(schema, claims, index)
    row_keys = _row_keys(schema, index, cells)
    tables = _load_metadata(index, schema, checks)
    keep = {name: _kept_entities(col, claims[name]) for name, col in columns.items()}
    if schema.row == "image":
        keep[IMAGE_COLUMN] = _present_entities(claims)

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
            images = {name: cells.get((name, sub, ses), []) for name in columns}
            for name, col in columns.items():
                if not col.many and len(images[name]) > 1:
                    ambiguous.append(_ambiguity(name, col, sub, ses, images[name]))
        values = _image_values(schema, index, images, keep, claimed_by, missing_companions)
        values.update(_metadata_values(schema, tables, sub, ses))
        row_id = f"{prefixes[0]}-{sub}" + (f"_{prefixes[1]}-{ses}" if ses else "")
        rows.append(Row(key=path or row_id, subject=sub, session=ses, split="train",
                        images=images, values=values, prefixes=prefixes))

    checks += _split_rows(schema, rows)
    checks.append(ValidationCheck(
        name="one file per single-valued cell", expected=0, actual=len(ambiguous),
        passed=not ambiguous, details=first_lines(ambiguous, 20),
    ))
    if any(col.companions for col in columns.values()):
        checks.append(ValidationCheck(
            name="companion files present", expected=0, actual=len(missing_companions),
            passed=not missing_companions, details=first_lines(missing_companions, 20),
        ))
    claimed = {path: names[0] for path, names in claimed_by.items()}
    ignored = set(index.ignored)
    unclaimed = [p for p in index.nifti_on_disk if p not in claimed and p not in ignored]
    excluded = [p for p in index.nifti_on_disk if p not in claimed and p in ignored]
    checks += _coverage_checks(schema, index, claims, claimed_by, unclaimed)
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
    features = _features(schema, columns, keep)
    return RowSet(
        schema=schema, index=index, rows=rows, features=features,
        image_columns={IMAGE_COLUMN: False} if schema.row == "image"
        else {name: col.many for name, col in columns.items()},
        checks=checks, claimed=claimed, unclaimed=unclaimed,
    )


# -- grouping ---------------------------------------------------------------------------

Key = tuple[str, str | None, str | None]  # subject, session, path (image rows)


def _group(
    schema: Schema, claims: dict[str, list[BidsFile]], index: BidsIndex
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
        return [(index.file(p).subject, index.file(p).session, p) for p in paths]  # type: ignore[union-attr]
    keys: set[tuple[str, str | None]] = set()
    for sub in index.subjects:
        sessions = index.sessions.get(sub) or []
        if schema.row == "session" and sessions:
            keys.update((sub, ses) for ses in sessions)
        else:
            keys.add((sub, None))
    keys.update((sub, ses) for (_, sub, ses) in cells)  # derivatives-only subjects/sessions
    ordered = sorted(keys, key=lambda k: (natural_key(k[0]), natural_key(k[1] or "")))
    return [(sub, ses, None) for sub, ses in ordered]


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


def _kept_entities(col: Column, files: list[BidsFile]) -> tuple[str, ...]:
    if not col.many:
        return ()
    if col.keep is not None:
        return col.keep
    varying = {
        k for k in {k for f in files for k in f.entities}
        if k not in _NOT_KEPT and len({f.entities.get(k) for f in files}) > 1
    }
    order = entity_order()
    return tuple(k for k in order if k in varying) + tuple(sorted(varying - set(order)))


# -- cell values -------------------------------------------------------------------------


def _image_values(
    schema: Schema,
    index: BidsIndex,
    images: dict[str, list[BidsFile]],
    keep: dict[str, tuple[str, ...]],
    claimed_by: dict[str, list[str]],
    missing: list[str],
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if schema.row == "image":
        (file,) = images[IMAGE_COLUMN]
        col = schema.image_columns[claimed_by[file.path][0]]
        values["column"] = claimed_by[file.path][0]
        values["pipeline"] = file.pipeline
        for ent in keep[IMAGE_COLUMN]:
            values[ent] = file.entities.get(ent)
        for ext, kind in _image_row_companions(schema):
            declared = dict(col.companions)
            values[ext] = _companion(index, file, ext, declared.get(ext, kind), missing) \
                if ext in declared else None
        if any(c.sidecar for c in schema.image_columns.values()):
            values["sidecar"] = _sidecar(index, file, schema.privacy.drop) if col.sidecar \
                else None
        return values
    for name, col in schema.image_columns.items():
        files = images[name]
        for ent in keep[name]:
            values[f"{name}_{ent}"] = [f.entities.get(ent) for f in files]
        for ext, kind in col.companions:
            found = [_companion(index, f, ext, kind, missing) for f in files]
            values[f"{name}_{ext}"] = found if col.many else (found[0] if found else None)
        if col.sidecar:
            texts = [_sidecar(index, f, schema.privacy.drop) for f in files]
            values[f"{name}_sidecar"] = texts if col.many else (texts[0] if texts else None)
    return values


def _companion(index: BidsIndex, file: BidsFile, ext: str, kind: CompanionKind,
               missing: list[str]) -> Any:
    path = index.companion(file, f".{ext}")
    if path is None:
        missing.append(f"{shown(file.path)} has no .{ext} file (searched by BIDS inheritance up to "
                       f"its dataset root). Add it, or drop {ext!r} from the column's companions.")
        return None
    text = path.read_text(encoding="utf-8")
    if kind == "text":
        return text
    try:
        lines = [[float(x) for x in line.split()] for line in text.splitlines() if line.strip()]
    except ValueError:
        rel = path.relative_to(index.root).as_posix()
        raise SchemaError(f"{shown(rel)} is not whitespace-separated numbers; declare {ext!r} as "
                          "'text' in the column's companions.") from None
    return [x for line in lines for x in line] if kind == "vector" else lines


def _sidecar(index: BidsIndex, file: BidsFile, drop: tuple[str, ...] | Any) -> str | None:
    """The published sidecar text: inheritance applied, the keys schema.py drops removed."""
    meta = {k: v for k, v in index.sidecar(file).items() if k not in drop}
    return json.dumps(meta, sort_keys=True) if meta else None


def _present_entities(claims: dict[str, list[BidsFile]]) -> tuple[str, ...]:
    """Entities found in any claimed file, in BIDS order: the columns of image rows."""
    present = {k for files in claims.values() for f in files for k in f.entities} - _NOT_KEPT
    order = entity_order()
    return tuple(k for k in order if k in present) + tuple(sorted(present - set(order)))


def _image_row_companions(schema: Schema) -> list[tuple[str, CompanionKind]]:
    seen: dict[str, CompanionKind] = {}
    for col in schema.image_columns.values():
        for ext, kind in col.companions:
            seen.setdefault(ext, kind)
    return sorted(seen.items())


# -- metadata ----------------------------------------------------------------------------


@dataclass
class _Tables:
    by_subject: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_session: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _load_metadata(index: BidsIndex, schema: Schema, checks: list[ValidationCheck]) -> _Tables:
    tables = _Tables()
    if schema.row == "subject" and SESSIONS_TABLE in schema.metadata:
        raise SchemaError("sessions.tsv holds per-session values; use row='session' or 'image'.")
    for table, columns in schema.metadata_spec().items():
        try:
            rows: list[TableRow] = load_table(index.root, table, columns)
        except TableError as err:
            checks.append(ValidationCheck(name=f"metadata {table}", expected="readable",
                                          actual="error", passed=False, details=str(err)))
            continue
        for r in rows:
            target = tables.by_subject.setdefault(r.subject, {}) if r.session is None \
                else tables.by_session.setdefault((r.subject, r.session), {})
            target.update(r.values)
        checks.append(_folder_agreement(index, table, rows))
    return tables


def _folder_agreement(index: BidsIndex, table: str, rows: list[TableRow]) -> ValidationCheck:
    """Subjects (or sessions) listed in a table but without a folder, and the reverse."""
    if all(r.session is None for r in rows):
        listed = {r.subject for r in rows}
        folders = set(index.subjects)
        label = "subjects"
        fmt = "sub-{}".format
        no_folder = sorted(listed - folders, key=natural_key)
        no_row = sorted(folders - listed, key=natural_key)
        to_text = [fmt(s) for s in no_folder], [fmt(s) for s in no_row]
    else:
        listed_s = {(r.subject, r.session or "") for r in rows}
        folders_s = {(s, ses) for s, sess in index.sessions.items() for ses in sess}
        label = "sessions"
        to_text = (
            [f"sub-{s}/ses-{e}" for s, e in sorted(listed_s - folders_s)],
            [f"sub-{s}/ses-{e}" for s, e in sorted(folders_s - listed_s)],
        )
    no_folder_t, no_row_t = to_text
    details = []
    if no_folder_t:
        details.append(f"In {table} but no folder: {summarize_paths(no_folder_t)}")
    if no_row_t:
        details.append(f"Folder but no row in {table}: {summarize_paths(no_row_t)} "
                       "(their metadata will be null)")
    return ValidationCheck(
        name=f"{table} matches {label} folders", expected=0,
        actual=len(no_folder_t) + len(no_row_t), passed=not details,
        details="\n".join(details), severity="warning",
    )


def _metadata_values(schema: Schema, tables: _Tables, sub: str, ses: str | None) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(schema.metadata_columns())
    values.update(tables.by_subject.get(sub, {}))
    if ses is not None:
        values.update(tables.by_session.get((sub, ses), {}))
    return values


# -- splits ------------------------------------------------------------------------------


def _split_rows(schema: Schema, rows: list[Row]) -> list[ValidationCheck]:
    if schema.splits is None:
        return []
    problems: list[str] = []
    if isinstance(schema.splits, str):
        column = schema.splits
        if column not in schema.metadata_columns():
            raise SchemaError(f"splits={column!r} must name a declared metadata column.")
        for r in rows:
            value = r.values.get(column)
            if value is None or not _SPLIT_NAME.match(str(value)):
                problems.append(f"{r.key}: {column}={value!r} is not a split name")
            else:
                r.split = str(value)
    else:
        assignment: dict[str, str] = {}
        for split, subjects in schema.splits.items():
            if not _SPLIT_NAME.match(split):
                raise SchemaError(f"Split name {split!r} must be letters, digits and _ only.")
            for s in subjects:
                label = s.removeprefix("sub-")
                if label in assignment:
                    raise SchemaError(f"sub-{label} is listed in splits {assignment[label]!r} "
                                      f"and {split!r}.")
                assignment[label] = split
        for r in rows:
            if r.subject in assignment:
                r.split = assignment[r.subject]
            else:
                problems.append(f"sub-{r.subject} is in no split")
    return [ValidationCheck(
        name="every row has a split", expected=0, actual=len(problems), passed=not problems,
        details=first_lines(problems, 20),
    )]


# -- coverage ----------------------------------------------------------------------------


def _coverage_checks(
    schema: Schema, index: BidsIndex, claims: dict[str, list[BidsFile]],
    claimed_by: dict[str, list[str]], unclaimed: list[str],
) -> list[ValidationCheck]:
    checks: list[ValidationCheck] = []
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
                    + ("." if schema.strict else " (strict=True makes this an error)."))
    checks.append(ValidationCheck(
        name="every NIfTI claimed by a column", expected=0, actual=len(unclaimed),
        passed=not unclaimed, details=details,
        severity="error" if schema.strict else "warning",
    ))
    empty = [name for name, files in claims.items() if not files]
    checks.append(ValidationCheck(
        name="every column matches files", expected=0, actual=len(empty), passed=not empty,
        details="\n".join(f"Column {n!r} ({schema.image_columns[n].query.describe()}) matched "
                          "no file. Check the query against a file name." for n in empty),
    ))
    twice = sorted((p for p, names in claimed_by.items() if len(names) > 1), key=natural_key)
    checks.append(ValidationCheck(
        name="no file in two columns", expected=0, actual=len(twice), passed=not twice,
        details=first_lines([f"{shown(p)} is in columns {', '.join(claimed_by[p])} (its bytes "
                             "are stored twice)" for p in twice], 10),
        severity="warning",
    ))
    unreadable = [p for p in index.unreadable if p in claimed_by]
    checks.append(ValidationCheck(
        name="claimed files readable", expected=0, actual=len(unreadable), passed=not unreadable,
        details=(f"Cannot read {summarize_paths(unreadable)}. Broken symlinks usually mean "
                 "annexed content was not fetched: run `datalad get` (or `git annex get`) "
                 "on them.") if unreadable else "",
    ))
    return checks


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


# -- features ----------------------------------------------------------------------------


def _entity_feature(name: str) -> Value:
    return Value("int32") if name in index_entities() else Value("string")


def _companion_feature(kind: CompanionKind) -> Any:
    if kind == "text":
        return Value("string")
    return List(Value("float32")) if kind == "vector" else List(List(Value("float32")))


def _features(
    schema: Schema, columns: dict[str, Column], keep: dict[str, tuple[str, ...]]
) -> datasets.Features:
    feats: dict[str, Any] = {"subject_id": Value("string")}
    if schema.row != "subject":
        feats["session_id"] = Value("string")
    if schema.row == "image":
        feats["column"] = Value("string")
        feats["pipeline"] = Value("string")
        for ent in keep[IMAGE_COLUMN]:
            feats[ent] = _entity_feature(ent)
        feats[IMAGE_COLUMN] = Nifti()
        for ext, kind in _image_row_companions(schema):
            feats[ext] = _companion_feature(kind)
        if any(c.sidecar for c in columns.values()):
            feats["sidecar"] = Value("string")
    else:
        for name, col in columns.items():
            feats[name] = List(Nifti()) if col.many else Nifti()
            for ent in keep[name]:
                feats[f"{name}_{ent}"] = List(_entity_feature(ent))
            for ext, kind in col.companions:
                feat = _companion_feature(kind)
                feats[f"{name}_{ext}"] = List(feat) if col.many else feat
            if col.sidecar:
                feats[f"{name}_sidecar"] = List(Value("string")) if col.many else Value("string")
    for name, dtype in schema.metadata_columns().items():
        feats[name] = Value(dtype)
    return datasets.Features(feats)


def row_ids(row: Row, level: str) -> dict[str, Any]:
    """The identifying cells of a row: ``sub-XX`` / ``ses-YY`` as written in the tree (``tpl-``
    and ``cohort-`` in a template dataset)."""
    ids: dict[str, Any] = {"subject_id": f"{row.prefixes[0]}-{row.subject}"}
    if level != "subject":
        ids["session_id"] = f"{row.prefixes[1]}-{row.session}" if row.session else None
    return ids
