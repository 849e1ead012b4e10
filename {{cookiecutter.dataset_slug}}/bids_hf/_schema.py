"""The schema language: which BIDS files feed which column, and what a row is.

A schema is data. A maintainer writes (or reviews, when inferred) one ``Schema`` in the
generated repo's ``schema.py``; it reads like a table::

    SCHEMA = Schema(
        row="session",
        columns={
            "t1w":    many(suffix="T1w", datatype="anat"),
            "lesion": one(pipeline="lesion_masks", suffix="mask", desc="lesion"),
            "flair":  "anat/*_FLAIR.nii.gz",            # a glob is shorthand for one(glob)
        },
        metadata={"participants.tsv": {"age_at_stroke": "float32", "sex": "string"}},
    )

Entity names are those neuroimagers know from pybids (``subject``, ``session``,
``acquisition``, ``description``, ``extension``...) or the short ones in file names (``sub``,
``ses``, ``acq``, ``desc``, ``ext``...); both map to bids2table's column names.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._entities import entity_names, index_entities
from ._errors import InputError
from ._index import BidsFile

RowLevel = Literal["subject", "session", "image"]
ROW_LEVELS: tuple[str, ...] = ("subject", "session", "image")

#: Metadata value types a schema may declare, as ``datasets.Value`` dtypes.
VALUE_TYPES = ("string", "float32", "float64", "int32", "int64", "bool")

#: How a companion file (``.bval``, ``.bvec``...) is stored: all numbers as one list
#: (``vector``), one list per line (``matrix``), or the file's text.
CompanionKind = Literal["vector", "matrix", "text"]
COMPANION_KINDS = ("vector", "matrix", "text")
_DEFAULT_COMPANION_KIND: dict[str, CompanionKind] = {"bval": "vector", "bvec": "matrix"}

ANY_PIPELINE = "*"
#: The image column of ``row="image"`` datasets (one image per row, whatever column claimed it).
IMAGE_COLUMN = "nifti"


class SchemaError(InputError, ValueError):
    """The schema itself is malformed (unknown entity, bad type, clashing names)."""


def normalize_entity(name: str) -> str:
    try:
        return entity_names()[name]
    except KeyError:
        close = [n for n in entity_names() if n.startswith(name[:3])]
        hint = f" Did you mean {', '.join(sorted(close)[:4])}?" if close else ""
        raise SchemaError(f"Unknown BIDS entity {name!r}.{hint}") from None


EntityFilter = str | int | None | Sequence[str | int]


@dataclass(frozen=True)
class Query:
    """Which files a column takes.

    ``entities`` filter exactly (a value, a list of allowed values, or ``None`` for "must
    be absent"); ``pipeline`` selects raw data (``None``), one ``derivatives/<pipeline>``, or
    any (``"*"``); ``glob`` matches the path with its ``sub-*/`` and ``ses-*/`` folders
    removed (``anat/*_T1w.nii.gz``, ``derivatives/masks/*_mask.nii.gz``).
    """

    entities: tuple[tuple[str, EntityFilter], ...] = ()
    pipeline: str | None = None
    glob: str | None = None

    def matches(self, file: BidsFile) -> bool:
        if not file.is_nifti:
            return False
        if self.glob is None:
            if file.bidsignored:  # excluded from BIDS on purpose: only a glob reaches it
                return False
            if self.pipeline != ANY_PIPELINE and file.pipeline != self.pipeline:
                return False
        elif not fnmatch.fnmatchcase(file.tail, self.glob):
            return False
        for name, want in self.entities:
            have = file.entities.get(name)
            if not _entity_matches(name, have, want):
                return False
        return True

    def describe(self) -> str:
        """A compact, human-readable form of the query (for errors and the card)."""
        parts = [f"glob {self.glob!r}"] if self.glob else []
        if self.glob is None:
            parts.append("raw data" if self.pipeline is None else
                         "any pipeline" if self.pipeline == ANY_PIPELINE else
                         f"derivatives/{self.pipeline}")
        parts += [f"{k}={v!r}" for k, v in self.entities]
        return ", ".join(parts)


def _entity_matches(name: str, have: str | int | None, want: EntityFilter) -> bool:
    if want is None:
        return have is None
    if have is None:
        return False
    wanted = want if isinstance(want, (list, tuple)) else (want,)
    if name in index_entities():
        # run-01 and run=1 are the same run: bids2table parses index entities as int.
        try:
            return int(have) in {int(w) for w in wanted}
        except (TypeError, ValueError):
            return str(have) in {str(w) for w in wanted}
    return str(have) in {str(w) for w in wanted}


@dataclass(frozen=True)
class Column:
    """One output column fed by NIfTI files.

    Args:
        query: which files.
        many: ``False`` -> ``Nifti()`` (at most one file per row; two is an error naming
            both); ``True`` -> ``List(Nifti())`` in natural order (run-2 before run-10).
        keep: for ``many`` columns, entities stored as aligned lists next to the images
            (``<column>_<entity>``); ``None`` keeps every entity that varies among the files.
        companions: extra files next to each image, found by BIDS inheritance, e.g.
            ``("bval", "bvec")`` gives ``<column>_bval`` (all numbers as one list) and
            ``<column>_bvec`` (one list per line); ``{"bval": "text"}`` keeps the raw text.
        sidecar: add ``<column>_sidecar``: the JSON sidecar (inheritance applied) as text.
        description: a sentence for the dataset card.
    """

    query: Query
    many: bool = False
    keep: tuple[str, ...] | None = None
    companions: tuple[tuple[str, CompanionKind], ...] = ()
    sidecar: bool = False
    description: str = ""


def _column(
    glob: str | None,
    many: bool,
    pipeline: str | None,
    keep: Sequence[str] | None,
    companions: Mapping[str, CompanionKind] | Sequence[str] | None,
    sidecar: bool,
    description: str,
    entities: Mapping[str, EntityFilter],
) -> Column:
    if glob is not None and pipeline is not None:
        raise SchemaError(
            f"Give either a glob ({glob!r}) or pipeline={pipeline!r}, not both: "
            "a glob names the derivatives folder itself (derivatives/<pipeline>/...)."
        )
    norm = tuple(sorted(
        (normalize_entity(k), tuple(v) if isinstance(v, list) else v) for k, v in entities.items()
    ))
    if any(k in {"sub"} for k, _ in norm):
        raise SchemaError("Filter subjects with the schema's splits or subjects, not in a column.")
    if isinstance(companions, Mapping):
        comp = tuple((ext.lstrip("."), kind) for ext, kind in companions.items())
    else:
        comp = tuple(
            (e := ext.lstrip("."), _DEFAULT_COMPANION_KIND.get(e, "text"))
            for ext in companions or ()
        )
    for ext, kind in comp:
        if kind not in COMPANION_KINDS:
            raise SchemaError(
                f"Companion {ext!r}: kind must be one of {', '.join(COMPANION_KINDS)}, "
                f"not {kind!r}."
            )
    return Column(
        query=Query(entities=norm, pipeline=pipeline, glob=glob),
        many=many,
        keep=None if keep is None else tuple(normalize_entity(k) for k in keep),
        companions=comp,
        sidecar=sidecar,
        description=description,
    )


def one(
    glob: str | None = None,
    /,
    *,
    pipeline: str | None = None,
    companions: Mapping[str, CompanionKind] | Sequence[str] | None = None,
    sidecar: bool = False,
    description: str = "",
    **entities: EntityFilter,
) -> Column:
    """A column holding at most one image per row (``Nifti()``)."""
    return _column(glob, False, pipeline, (), companions, sidecar, description, entities)


def many(
    glob: str | None = None,
    /,
    *,
    pipeline: str | None = None,
    keep: Sequence[str] | None = None,
    companions: Mapping[str, CompanionKind] | Sequence[str] | None = None,
    sidecar: bool = False,
    description: str = "",
    **entities: EntityFilter,
) -> Column:
    """A column holding every matching image of a row, in natural order (``List(Nifti())``)."""
    return _column(glob, True, pipeline, keep, companions, sidecar, description, entities)


@dataclass(frozen=True)
class MetaColumn:
    """A metadata table column: its type and, when the table's name won't do, the output name."""

    dtype: str
    name: str | None = None
    description: str = ""


def meta(dtype: str, name: str | None = None, description: str = "") -> MetaColumn:
    """A metadata column stored under another name, e.g. ``meta("string", name="site")``."""
    return MetaColumn(dtype, name, description)


@dataclass(frozen=True)
class Expected:
    """Counts the maintainer expects; validation fails when the data disagree.

    ``files`` maps a column to its total number of files. ``tolerance`` is a fraction
    (0.02 accepts 2% either way); 0 means exact.
    """

    subjects: int | None = None
    rows: int | None = None
    files: Mapping[str, int] = field(default_factory=dict)
    tolerance: float = 0.0


_CONFIG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
Defacing = Literal["yes", "not-needed"]
DEFACING = ("yes", "not-needed")


@dataclass(frozen=True)
class Privacy:
    """The maintainer's decisions on fields that look personal, reviewed once, kept in schema.py.

    Args:
        allow: field -> why it may be published as is, e.g. ``{"InstitutionName": "named in
            the data paper"}``. A field is a sidecar key, a table column or a NIfTI header
            field (``descrip``, ``aux_file``...). Its findings are then reported as reviewed,
            not blocking, and the card lists the decision.
        drop: sidecar keys removed from the published sidecar text (``<column>_sidecar``),
            e.g. ``("AcquisitionTime",)``. The source files are not touched; the card lists
            what was removed.
        defaced: ``"yes"`` (anatomical images are defaced) or ``"not-needed"`` (no face in
            any image: skull-stripped, phantom, no anatomical scan). Required to publish
            with ``--public``; recorded in the card.
    """

    allow: Mapping[str, str] = field(default_factory=dict)
    drop: Sequence[str] = ()
    defaced: Defacing | None = None

    def __post_init__(self) -> None:
        if self.defaced is not None and self.defaced not in DEFACING:
            raise SchemaError(f"Privacy(defaced={self.defaced!r}): use 'yes' (anatomical "
                              "images are defaced) or 'not-needed' (no face in any image).")
        for name, why in self.allow.items():
            if not isinstance(why, str) or not why.strip():
                example = "{" + repr(name) + ": 'named in the data paper'}"
                raise SchemaError(f"Privacy(allow=...) needs a reason for {name!r}, e.g. "
                                  f"allow={example}.")
        object.__setattr__(self, "drop", tuple(self.drop))


@dataclass(frozen=True)
class Schema:
    """A whole dataset: row granularity, image columns, metadata tables, expectations.

    Args:
        columns: name -> ``one(...)`` / ``many(...)`` / glob string.
        row: ``"subject"``, ``"session"`` (subjects without sessions give one row each) or
            ``"image"`` (one row per file: the tree as a flat table of scans).
        metadata: table path (relative to the root) -> {table column: type or
            ``meta(type, name=...)``}. The table needs a ``participant_id`` column and, for
            per-session values, ``session_id``. ``"sessions.tsv"`` means every
            ``sub-*/sub-*_sessions.tsv``.
        expected: counts checked before anything is built.
        splits: ``None`` (everything is ``train``), a metadata column whose values are split
            names, or ``{split: [participant_id, ...]}``.
        configs: extra named column subsets, e.g. ``{"anat": ["t1w", "lesion"]}``. Each is
            written as Parquet files of its own (``data/<config>/``), so loading it downloads
            its own bytes only; on the Hub's Xet storage the duplicated image bytes are
            deduplicated.
        strict: make NIfTI files that no column claims an error instead of a warning.
        privacy: decisions on fields that look personal (``Privacy``): allowed with a reason,
            dropped from published sidecars, and the defacing attestation.
        allow_outside: folders outside the BIDS root that claimed files may link into
            (symlinks elsewhere are refused; a git-annex/DataLad object store needs nothing).
    """

    columns: Mapping[str, Column | str]
    row: RowLevel = "session"
    metadata: Mapping[str, Mapping[str, str | MetaColumn]] = field(default_factory=dict)
    expected: Expected = field(default_factory=Expected)
    splits: str | Mapping[str, Sequence[str]] | None = None
    configs: Mapping[str, Sequence[str]] = field(default_factory=dict)
    strict: bool = False
    privacy: Privacy = field(default_factory=Privacy)
    allow_outside: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.row not in ROW_LEVELS:
            raise SchemaError(f"row must be one of {', '.join(ROW_LEVELS)}, not {self.row!r}.")
        if not self.columns:
            raise SchemaError("The schema declares no columns. Add at least one image column.")
        normalized = {
            name: one(col) if isinstance(col, str) else col for name, col in self.columns.items()
        }
        for name, col in normalized.items():
            if not isinstance(col, Column):
                raise SchemaError(
                    f"Column {name!r} must be one(...), many(...) or a glob string, "
                    f"not {type(col).__name__}."
                )
            if not name.isidentifier():
                raise SchemaError(f"Column name {name!r} must be a Python identifier "
                                  "(t1w, bold_rest).")
        object.__setattr__(self, "columns", normalized)
        for table, meta_cols in self.metadata_spec().items():
            for meta_col, spec in meta_cols.items():
                if spec.dtype not in VALUE_TYPES:
                    raise SchemaError(
                        f"Metadata column {meta_col!r} of {table}: type {spec.dtype!r} is not "
                        f"one of {', '.join(VALUE_TYPES)}."
                    )
        clash = set(self.metadata_columns()) & set(self.reserved_names())
        if clash:
            raise SchemaError(
                f"Metadata columns {sorted(clash)} clash with image or id columns; store them "
                f"under another name, e.g. {min(clash)!r}: meta('string', "
                f"name='tsv_{min(clash)}')."
            )
        for config, names in self.configs.items():
            if not _CONFIG_NAME.match(config) or config in ("default", "data"):
                raise SchemaError(
                    f"Config name {config!r}: use lowercase letters, digits, '_' or '-' (it "
                    "names the folder of its Parquet files), and not 'default' or 'data'.")
            unknown = [n for n in names
                       if n not in self.columns and n not in self.metadata_columns()]
            if unknown:
                raise SchemaError(f"Config {config!r} names unknown columns {unknown}.")

    @property
    def image_columns(self) -> dict[str, Column]:
        return dict(self.columns)  # type: ignore[arg-type]  # normalized in __post_init__

    def metadata_spec(self) -> dict[str, dict[str, MetaColumn]]:
        """table -> {table column -> MetaColumn with its output name filled in}."""
        return {
            table: {
                col: MetaColumn(spec, col) if isinstance(spec, str)
                else MetaColumn(spec.dtype, spec.name or col, spec.description)
                for col, spec in cols.items()
            }
            for table, cols in self.metadata.items()
        }

    def metadata_columns(self) -> dict[str, str]:
        """Every metadata output column -> its type; a name declared twice is an error."""
        out: dict[str, str] = {}
        for table, cols in self.metadata_spec().items():
            for spec in cols.values():
                assert spec.name is not None
                if spec.name in out:
                    raise SchemaError(
                        f"Metadata column {spec.name!r} comes from two tables ({table} and "
                        f"another); rename one with meta(type, name=...).")
                out[spec.name] = spec.dtype
        return out

    def reserved_names(self) -> list[str]:
        names = ["subject_id", "session_id"]
        for name, col in self.image_columns.items():
            names.append(name)
            names += [f"{name}_{ext}" for ext, _ in col.companions]
            if col.sidecar:
                names.append(f"{name}_sidecar")
        return names

    def fingerprint_text(self) -> str:
        """A stable text of everything that shapes the output (for shard fingerprints)."""
        return json.dumps(
            {
                "row": self.row,
                "columns": {k: repr(v) for k, v in self.image_columns.items()},
                "metadata": {t: {c: repr(m) for c, m in cols.items()}
                             for t, cols in self.metadata_spec().items()},
                "drop": sorted(self.privacy.drop),  # changes the published sidecar text
                "configs": {k: list(v) for k, v in self.configs.items()},
                "splits": self.splits if not isinstance(self.splits, Mapping)
                else {k: list(v) for k, v in self.splits.items()},
            },
            sort_keys=True,
        )


def load_schema(path: str | os.PathLike[str]) -> Schema:
    """The ``SCHEMA`` of a schema.py file, loaded by path under a name of its own, so the
    builders of several dataset repos installed in one environment each get theirs."""
    import importlib.util
    import sys

    file = Path(path).resolve()
    name = f"_bids_hf_schema_{abs(hash(str(file)))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None or not file.is_file():
        raise SchemaError(f"{file} does not exist. Write it, or propose one with `python "
                          "push.py --bids-root ROOT --infer-schema --write`.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    schema = getattr(module, "SCHEMA", None)
    if not isinstance(schema, Schema):
        raise SchemaError(f"{file.name} defines no SCHEMA = Schema(...) (found "
                          f"{type(schema).__name__}). Propose one with `python push.py "
                          "--bids-root ROOT --infer-schema --write`.")
    return schema


def as_schema(obj: Schema | Mapping[str, Any]) -> Schema:
    """Accept a ``Schema`` or the short dict form ``{"t1w": "anat/*_T1w.nii.gz", ...}``."""
    if isinstance(obj, Schema):
        return obj
    if isinstance(obj, Mapping):
        return Schema(columns=dict(obj))
    raise SchemaError(f"Expected a Schema or a dict of columns, got {type(obj).__name__}.")


__all__ = [
    "ANY_PIPELINE", "IMAGE_COLUMN", "Column", "Expected", "MetaColumn", "Privacy", "Query",
    "Schema", "SchemaError", "as_schema", "entity_names", "load_schema", "many", "meta",
    "normalize_entity", "one",
]
