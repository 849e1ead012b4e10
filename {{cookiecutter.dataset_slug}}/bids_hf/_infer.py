"""Schema inference: propose a reviewable ``schema.py`` from a BIDS root.

One column per group of images that are the same *kind*: same derivatives pipeline,
datatype, suffix, task, description and label. Entities that vary inside a group
(acquisition, run, echo, space, ...) stay inside the column, kept as aligned lists.
A column is ``one(...)`` when no row has two of its files, else ``many(...)``. Metadata
columns come from ``participants.tsv`` / ``sessions.tsv`` with types guessed from the
values, and the expected counts are filled in from the tree, so the first validation run
checks exactly what was seen.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ._index import BidsFile, BidsIndex
from ._rows import assemble_rows
from ._schema import MetaColumn, RowLevel, Schema, many, one
from ._tables import NULL, read_tsv
from ._util import natural_key

# Entities that name a *kind* of image (a column); the others vary within a column.
_KIND_ENTITIES = ("datatype", "suffix", "task", "desc", "label")
_NAME_ORDER = ("suffix", "task", "desc", "label")


def infer_schema(index: BidsIndex) -> str:
    """The source text of a ``schema.py`` describing every NIfTI kind found under the root."""
    row: RowLevel = "session" if any(index.sessions.values()) else "subject"
    groups: dict[tuple[str, ...], list[BidsFile]] = defaultdict(list)
    for f in index.files:
        if f.is_nifti:
            groups[_kind(f)].append(f)
    names = _column_names(list(groups))
    kinds_with = _entities_by_suffix(index)
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    for key in sorted(groups, key=_natural_tuple):
        files = groups[key]
        per_row = Counter((f.subject, f.session if row == "session" else None) for f in files)
        fn = "many" if max(per_row.values()) > 1 else "one"
        calls[names[key]] = (fn, _column_args(key, files, kinds_with, index))
    metadata = _metadata(index, row, {"subject_id", "session_id", *calls})
    if not calls:
        raise ValueError(f"No NIfTI files with BIDS names under {index.root}; nothing to infer.")
    # Counts come from the real row assembly, so the proposal validates on this tree.
    columns = {name: (many if fn == "many" else one)(**args) for name, (fn, args) in calls.items()}
    rowset = assemble_rows(index, Schema(columns=columns, row=row, metadata=metadata))
    lines = [
        '"""Schema of this dataset: which BIDS files feed which column.',
        "",
        f"Proposed from the tree ({len(index.nifti_on_disk)} NIfTI files); review every line.",
        "Columns are one(...) (one image per row) or many(...) (a list, natural order).",
        '"""',
        "",
        "from bids_hf import " + ", ".join(sorted(
            {"Expected", "Schema", *(fn for fn, _ in calls.values())}
            | ({"meta"} if any(isinstance(m, MetaColumn) for c in metadata.values()
                               for m in c.values()) else set()))),
        "",
        "SCHEMA = Schema(",
        f"    row={row!r},",
        "    columns={",
        *(f"        {name!r}: {fn}({_render_args(args)})," for name, (fn, args) in calls.items()),
        "    },",
    ]
    if metadata:
        lines.append("    metadata={")
        for table, cols in metadata.items():
            lines.append(f"        {table!r}: " + "{")
            lines += [f"            {col!r}: {_render_meta(spec)}," for col, spec in cols.items()]
            lines.append("        },")
        lines.append("    },")
    lines += [
        "    expected=Expected(",
        f"        subjects={len({r.subject for r in rowset.rows})},",
        f"        rows={len(rowset.rows)},",
        "        files={",
        *(f"            {name!r}: {rowset.column_files(name)}," for name in calls),
        "        },",
        "    ),",
        ")",
    ]
    not_bids = [p for p in index.nifti_on_disk if index.file(p) is None]
    if not_bids:
        lines += ["", f"# {len(not_bids)} NIfTI file(s) do not follow BIDS naming; reach them with a",
                  "# glob column (e.g. one('derivatives/x/*.nii.gz')) or list them in .bidsignore:"]
        lines += [f"#   {p}" for p in not_bids[:10]]
    return "\n".join(lines) + "\n"


def _natural_tuple(key: tuple[str, ...]) -> tuple[tuple[str | int, ...], ...]:
    return tuple(natural_key(v) for v in key)


def _kind(f: BidsFile) -> tuple[str, ...]:
    return (f.pipeline or "", *(str(f.entities.get(k, "")) for k in _KIND_ENTITIES))


def _column_names(keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    names: dict[tuple[str, ...], str] = {}
    taken: Counter[str] = Counter()
    for key in sorted(keys, key=_natural_tuple):
        pipeline = key[0]
        ents = dict(zip(_KIND_ENTITIES, key[1:], strict=True))
        parts = [ents[k] for k in _NAME_ORDER if ents[k]]
        if pipeline:
            parts.insert(0, pipeline.split("/")[-1])
        name = _identifier("_".join(parts))
        taken[name] += 1
        names[key] = name if taken[name] == 1 else f"{name}_{taken[name]}"
    return names


def _identifier(text: str) -> str:
    name = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower() or "image"
    return f"img_{name}" if name[0].isdigit() else name


def _entities_by_suffix(index: BidsIndex) -> dict[tuple[str | None, str], set[str]]:
    """(pipeline, suffix) -> every entity seen on NIfTI files of that kind."""
    seen: dict[tuple[str | None, str], set[str]] = defaultdict(set)
    for f in index.files:
        if f.is_nifti:
            seen[(f.pipeline, str(f.entities.get("suffix", "")))].update(f.entities)
    return seen


def _column_args(key: tuple[str, ...], files: list[BidsFile],
                 seen: dict[tuple[str | None, str], set[str]], index: BidsIndex) -> dict[str, Any]:
    pipeline = key[0]
    ents = dict(zip(_KIND_ENTITIES, key[1:], strict=True))
    args: dict[str, Any] = {}
    if pipeline:
        args["pipeline"] = pipeline
    args.update({k: v for k, v in ents.items() if v})
    # A kind entity absent from this group must stay absent: otherwise a file of the same
    # suffix with, say, a desc- entity would be claimed by two columns.
    for k in ("task", "desc", "label"):
        if not ents[k] and k in seen[(pipeline or None, ents["suffix"])]:
            args[k] = None
    if ents["suffix"] == "dwi" and files and index.companion(files[0], ".bval") is not None:
        args["companions"] = ("bval", "bvec")
    return args


def _render_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _metadata(index: BidsIndex, row: str, taken: set[str]) -> dict[str, dict[str, str | MetaColumn]]:
    """Declared metadata for participants.tsv (and sessions.tsv for session rows).

    ``taken`` holds the names already used (id and image columns); a table column whose
    name is taken, or has stray spaces, is declared with an explicit output name rather
    than dropped.
    """
    tables: dict[str, dict[str, str]] = {}
    participants = index.root / "participants.tsv"
    if participants.is_file():
        tables["participants.tsv"] = typed_columns(participants, skip={"participant_id"})
    if row == "session":
        merged: dict[str, str] = {}
        for path in sorted(index.root.glob("sub-*/sub-*_sessions.tsv")):
            for col, dtype in typed_columns(path, skip={"session_id"}).items():
                merged[col] = _wider(merged.get(col), dtype)
        tables["sessions.tsv"] = merged
    out: dict[str, dict[str, str | MetaColumn]] = {}
    used = set(taken)
    for table, cols in tables.items():
        declared: dict[str, str | MetaColumn] = {}
        for col, dtype in cols.items():
            name = col.strip() or "unnamed"
            if name in used:
                name = f"{table.split('.')[0]}_{name}"
            used.add(name)
            declared[col] = dtype if name == col else MetaColumn(dtype, name)
        if declared:
            out[table] = declared
    return out


def _render_meta(spec: str | MetaColumn) -> str:
    if isinstance(spec, str):
        return repr(spec)
    return f"meta({spec.dtype!r}, name={spec.name!r})"


def typed_columns(path: Path, skip: set[str]) -> dict[str, str]:
    """Every column of a TSV but ``skip``, with a type guessed from its values."""
    frame = read_tsv(path)
    return {col: _guess_type(frame[col].tolist()) for col in frame.columns if col not in skip}


def _guess_type(values: list[str]) -> str:
    present = [v.strip() for v in values if v.strip() not in (NULL, "")]
    if not present:
        return "string"
    if all(re.fullmatch(r"[-+]?\d+", v) for v in present):
        return "int64"
    if all(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", v) for v in present):
        return "float64"
    return "string"


def _wider(a: str | None, b: str) -> str:
    if a is None or a == b:
        return b
    if {a, b} == {"int64", "float64"}:
        return "float64"
    return "string"
