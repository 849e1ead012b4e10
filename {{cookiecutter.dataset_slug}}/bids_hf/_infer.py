"""Schema inference: propose a reviewable ``schema.py`` from a BIDS root.

One column per group of images that are the same *kind*: same derivatives pipeline,
datatype, suffix, task, description and label. Entities that vary inside a group
(acquisition, run, echo, space, ...) stay inside the column, kept as aligned lists.
A column is ``one(...)`` when no row has two of its files, else ``many(...)``; series that
are unusable without their acquisition parameters get ``sidecar=True``. Images listed in
``.bidsignore`` get glob columns with a comment, so nothing is lost unless the maintainer
deletes the line. Metadata columns come from ``participants.tsv`` / ``sessions.tsv`` with
types guessed from the values (columns that look like identity or contact data are left
out, with a comment); identity, date and time fields of the sidecars that will be
published are proposed for ``Privacy(drop=...)``. The expected counts are filled in from
the tree, so the first validation run checks exactly what was seen.

Inference never needs the current schema.py, and ``write_schema`` replaces it atomically,
keeping the previous one as a timestamped backup.
"""

from __future__ import annotations

import re
import shutil
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ._errors import InputError
from ._index import BidsFile, BidsIndex
from ._phi import scan_tables, table_name
from ._rows import assemble_rows
from ._schema import MetaColumn, RowLevel, Schema, many, one
from ._state import write_atomic
from ._tables import NULL, read_tsv, sessions_tables
from ._util import first_lines, natural_key, shown

# Entities that name a *kind* of image (a column); the others vary within a column.
_KIND_ENTITIES = ("datatype", "suffix", "task", "desc", "label")
_NAME_ORDER = ("suffix", "task", "desc", "label")
_PARAMETER_DATATYPES = ("func", "dwi", "fmap", "perf", "pet")
_PARAMETER_ENTITIES = ("echo", "flip", "inv", "mt", "part")


def infer_schema(index: BidsIndex) -> str:
    """The source text of a ``schema.py`` describing every NIfTI kind found under the root."""
    row: RowLevel = "session" if any(index.sessions.values()) else "subject"
    groups: dict[tuple[str, ...], list[BidsFile]] = defaultdict(list)
    ignored: dict[str, list[BidsFile]] = defaultdict(list)
    for f in index.files:
        if f.is_nifti and f.bidsignored:
            ignored[_ignored_glob(f)].append(f)
        elif f.is_nifti:
            groups[_kind(f)].append(f)
    names = _column_names(list(groups))
    kinds_with = _entities_by_suffix(index)
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    comments: dict[str, str] = {}
    for key in sorted(groups, key=_natural_tuple):
        files = groups[key]
        calls[names[key]] = (_one_or_many(files, row), _column_args(key, files, kinds_with, index))
        if calls[names[key]][1].get("sidecar"):
            comments[names[key]] = "+ <column>_sidecar: acquisition parameters (TR, TE...)"
    for pattern in sorted(ignored):
        name = _unique(_identifier(pattern.rsplit("_", 1)[-1].split(".")[0]), calls)
        calls[name] = (_one_or_many(ignored[pattern], row), {"": pattern})
        comments[name] = (f"{len(ignored[pattern])} files listed in .bidsignore (not BIDS); "
                          "kept so nothing is lost: delete this line to leave them out")
    if not calls:
        raise InputError(f"No NIfTI files under {index.root}; nothing to infer.")
    metadata, left_out = _metadata(index, row, {"subject_id", "session_id", *calls})
    # Counts come from the real row assembly, so the proposal validates on this tree.
    columns = {name: _call(fn, args) for name, (fn, args) in calls.items()}
    rowset = assemble_rows(index, Schema(columns=columns, row=row, metadata=metadata))
    drop, site = _privacy_proposal(rowset)
    imports = {"Expected", "Schema", *(fn for fn, _ in calls.values())}
    if any(isinstance(m, MetaColumn) for c in metadata.values() for m in c.values()):
        imports.add("meta")
    if drop:
        imports.add("Privacy")
    lines = [
        '"""Schema of this dataset: which BIDS files feed which column.',
        "",
        f"Proposed from the tree ({len(index.nifti_on_disk)} NIfTI files); review every line.",
        "Columns are one(...) (one image per row) or many(...) (a list, natural order);",
        "sidecar=True publishes each image's JSON sidecar (inheritance applied) as",
        "<column>_sidecar: acquisition parameters a BOLD or DWI series is unusable without.",
        '"""',
        "",
        "from bids_hf import " + ", ".join(sorted(imports)),
        "",
        "SCHEMA = Schema(",
        f"    row={row!r},",
        "    columns={",
    ]
    for name, (fn, args) in calls.items():
        line = f"        {name!r}: {fn}({_render_args(args)}),"
        if name in comments and len(line) + len(comments[name]) + 4 <= 100:
            line += f"  # {comments[name]}"
        elif name in comments:
            lines += textwrap.wrap(comments[name], 92, initial_indent="        # ",
                                   subsequent_indent="        # ")
        lines.append(line)
    lines.append("    },")
    if metadata:
        lines.append("    metadata={")
        for table, cols in metadata.items():
            lines.append(f"        {table!r}: " + "{")
            lines += [f"            {col!r}: {_render_meta(spec)}," for col, spec in cols.items()]
            lines.append("        },")
        lines.append("    },")
    for table, column, why in left_out:
        lines += textwrap.wrap(f"{table} column {column!r} left out: {why}. Declare it only if "
                               "it is meant to be public.", 92, initial_indent="    # ",
                               subsequent_indent="    # ")
    if drop:
        lines += [
            "    # Found in the sidecars this schema publishes: identity, date or time fields.",
            "    # They are removed from the published sidecar text (the files stay as they are).",
            f"    privacy=Privacy(drop={tuple(drop)!r}),",
        ]
    if site:
        lines += textwrap.wrap(
            f"Site fields in published sidecars (a warning): {', '.join(site)}. Once "
            "reviewed: privacy=Privacy(allow={'InstitutionName': 'why it may be public'}).",
            92, initial_indent="    # ", subsequent_indent="    # ")
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
        lines += ["", (f"# {len(not_bids)} NIfTI file(s) lie outside any sub-* folder, so no "
                       "row can hold them:")]
        lines.append(first_lines([shown(p) for p in not_bids], 10, indent="#   "))
    return "\n".join(lines) + "\n"


def write_schema(target: Path, text: str) -> Path | None:
    """Replace ``target`` with ``text`` atomically, after checking it compiles; a non-empty
    previous file is kept beside it as ``schema.py.<timestamp>.bak``, which is returned."""
    try:
        compile(text, str(target), "exec")
    except SyntaxError as err:  # a bug of the inference: never replace a file with it
        raise InputError(f"the proposed schema does not compile ({err}); {target} was left "
                         "as it is. Please report this.") from None
    backup = None
    if target.is_file() and target.read_text(encoding="utf-8").strip():
        if target.read_text(encoding="utf-8") == text:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = target.with_name(f"{target.name}.{stamp}.bak")
        n = 1
        while backup.exists():
            backup = target.with_name(f"{target.name}.{stamp}-{n}.bak")
            n += 1
        shutil.copy2(target, backup)
    write_atomic(target, text)
    return backup


def _one_or_many(files: list[BidsFile], row: str) -> str:
    per_row = Counter((f.subject, f.session if row == "session" else None) for f in files)
    return "many" if max(per_row.values()) > 1 else "one"


def _call(fn: str, args: dict[str, Any]) -> Any:
    kwargs = {k: v for k, v in args.items() if k}
    return (many if fn == "many" else one)(*([args[""]] if "" in args else []), **kwargs)


def _ignored_glob(f: BidsFile) -> str:
    """``anat/sub-01_ses-mri_run-1_echo-1_FLASH.nii.gz`` -> ``anat/*_FLASH.nii.gz``."""
    folder, _, name = f.tail.rpartition("/")
    stem, _, ext = name.partition(".")
    last = stem.rsplit("_", 1)[-1]
    pattern = f"*_{last}.{ext}" if "_" in stem else f"*.{ext}"
    return f"{folder}/{pattern}" if folder else pattern


def _unique(name: str, taken: dict[str, Any]) -> str:
    n, candidate = 1, name
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _privacy_proposal(rowset: Any) -> tuple[list[str], list[str]]:
    """Keys of the published sidecars to drop (identity, dates, times) and the site keys."""
    from ._checks import published_sidecar_findings

    findings = published_sidecar_findings(rowset)
    drop = sorted({f.field for f in findings if f.blocking and f.field})
    site = sorted({f.field for f in findings if not f.blocking and f.field})
    return drop, site


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
    if _needs_sidecar(ents, files, index):
        args["sidecar"] = True
    return args


def _needs_sidecar(ents: dict[str, str], files: list[BidsFile], index: BidsIndex) -> bool:
    """Series that cannot be used without their acquisition parameters: functional,
    diffusion, field maps, perfusion, PET, and quantitative anatomy (echo, flip angle,
    inversion, magnetisation transfer or part entities) — when they have a sidecar."""
    essential = ents["datatype"] in _PARAMETER_DATATYPES or any(
        k in f.entities for f in files[:20] for k in _PARAMETER_ENTITIES)
    return essential and any(index.sidecar(f) for f in files[:20])


def _render_args(args: dict[str, Any]) -> str:
    return ", ".join(repr(v) if k == "" else f"{k}={v!r}" for k, v in args.items())


def _metadata(index: BidsIndex, row: str, taken: set[str]
              ) -> tuple[dict[str, dict[str, str | MetaColumn]], list[tuple[str, str, str]]]:
    """Declared metadata for participants.tsv (and sessions.tsv for session rows), and the
    columns left out because they look like identity or contact data (table, column, why).

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
        for path in sessions_tables(index.root):
            for col, dtype in typed_columns(path, skip={"session_id"}).items():
                merged[col] = _wider(merged.get(col), dtype)
        tables["sessions.tsv"] = merged
    personal = {(table_name(f.path), f.field): f.what
                for f in scan_tables(index.root, {t: set(c) for t, c in tables.items()})
                if f.blocking}
    out: dict[str, dict[str, str | MetaColumn]] = {}
    left_out: list[tuple[str, str, str]] = []
    used = set(taken)
    for table, cols in tables.items():
        declared: dict[str, str | MetaColumn] = {}
        for col, dtype in cols.items():
            if (table, col) in personal:
                left_out.append((table, col, personal[(table, col)]))
                continue
            name = col.strip() or "unnamed"
            if name in used:
                name = f"{table.split('.')[0]}_{name}"
            used.add(name)
            declared[col] = dtype if name == col else MetaColumn(dtype, name)
        if declared:
            out[table] = declared
    return out, left_out





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
