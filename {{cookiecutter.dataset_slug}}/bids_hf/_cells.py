"""A row's cells beside its images: kept entities, companion files and JSON sidecars.

* a ``many(...)`` column keeps, as lists aligned with its images, the entities that vary
  among its files (``t1w_run``, ``t1w_acq``...) or those its ``keep`` names;
* companions (``.bval``, ``.bvec``...) are found by BIDS inheritance and stored as numbers
  or text; a missing one is reported (one check names them all);
* a sidecar is the JSON that applies to the image (inheritance applied), without the keys
  ``Privacy(drop=...)`` removes.

These small files are read while rows are assembled, so their errors surface before any
heavy work; image bytes are read only by the shard writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._entities import entity_order
from ._index import BidsFile, BidsIndex
from ._results import ValidationCheck
from ._schema import IMAGE_COLUMN, Column, CompanionKind, Schema, SchemaError
from ._util import first_lines, shown

_NOT_KEPT = {"sub", "ses", "tpl", "cohort", "ext"}  # identify the row or format, not the item

Kept = dict[str, tuple[str, ...]]  # image column -> entities stored beside it


def kept_entities(schema: Schema, claims: Mapping[str, list[BidsFile]]) -> Kept:
    """The entities each image column keeps (for ``row="image"``: every entity present)."""
    keep = {name: _kept(col, claims[name]) for name, col in schema.image_columns.items()}
    if schema.row == "image":
        keep[IMAGE_COLUMN] = _present_entities(claims)
    return keep


def cell_values(
    schema: Schema,
    index: BidsIndex,
    images: Mapping[str, list[BidsFile]],
    keep: Kept,
    claimed_by: Mapping[str, list[str]],
    missing: list[str],
) -> dict[str, Any]:
    """Every cell of a row derived from its images; a missing companion is added to
    ``missing`` (and its cell is null)."""
    values: dict[str, Any] = {}
    if schema.row == "image":
        (file,) = images[IMAGE_COLUMN]
        col = schema.image_columns[claimed_by[file.path][0]]
        values["column"] = claimed_by[file.path][0]
        values["pipeline"] = file.pipeline
        for ent in keep[IMAGE_COLUMN]:
            values[ent] = file.entities.get(ent)
        for ext, kind in image_row_companions(schema):
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


def companions_check(schema: Schema, missing: list[str]) -> list[ValidationCheck]:
    """One check naming every missing companion (none when no column declares any)."""
    if not any(col.companions for col in schema.image_columns.values()):
        return []
    return [ValidationCheck(
        name="companion files present", expected=0, actual=len(missing),
        passed=not missing, details=first_lines(missing, 20),
    )]


def image_row_companions(schema: Schema) -> list[tuple[str, CompanionKind]]:
    """The companion columns of ``row="image"`` rows: every extension any column declares."""
    seen: dict[str, CompanionKind] = {}
    for col in schema.image_columns.values():
        for ext, kind in col.companions:
            seen.setdefault(ext, kind)
    return sorted(seen.items())


def _kept(col: Column, files: list[BidsFile]) -> tuple[str, ...]:
    if not col.many:
        return ()
    if col.keep is not None:
        return col.keep
    varying = {
        k for k in {k for f in files for k in f.entities}
        if k not in _NOT_KEPT and len({f.entities.get(k) for f in files}) > 1
    }
    return _in_bids_order(varying)


def _present_entities(claims: Mapping[str, list[BidsFile]]) -> tuple[str, ...]:
    """Entities found in any claimed file, in BIDS order: the columns of image rows."""
    return _in_bids_order(
        {k for files in claims.values() for f in files for k in f.entities} - _NOT_KEPT)


def _in_bids_order(entities: set[str]) -> tuple[str, ...]:
    """BIDS's entity order, then entities unknown to BIDS alphabetically."""
    order = entity_order()
    return tuple(k for k in order if k in entities) + tuple(sorted(entities - set(order)))


def _companion(index: BidsIndex, file: BidsFile, ext: str, kind: CompanionKind,
               missing: list[str]) -> Any:
    path = index.companion(file, f".{ext}")
    if path is None:
        missing.append(f"{shown(file.path)} has no .{ext} file (searched by BIDS inheritance "
                       f"up to its dataset root). Add it, or drop {ext!r} from the column's "
                       "companions.")
        return None
    text = path.read_text(encoding="utf-8")
    if kind == "text":
        return text
    try:
        lines = [[float(x) for x in line.split()] for line in text.splitlines() if line.strip()]
    except ValueError:
        rel = path.relative_to(index.root).as_posix()
        raise SchemaError(f"{shown(rel)} is not whitespace-separated numbers; declare {ext!r} "
                          "as 'text' in the column's companions.") from None
    return [x for line in lines for x in line] if kind == "vector" else lines


def _sidecar(index: BidsIndex, file: BidsFile, drop: Sequence[str]) -> str | None:
    """The published sidecar text: inheritance applied, the keys schema.py drops removed."""
    meta = {k: v for k, v in index.sidecar(file).items() if k not in drop}
    return json.dumps(meta, sort_keys=True) if meta else None
