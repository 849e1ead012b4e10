"""Metadata tables: ``participants.tsv``, ``sub-*/sub-*_sessions.tsv`` and other TSVs.

BIDS writes missing values as ``n/a``. Everything else is a value *as written*: the ARC
cohort records ``wab_type = None`` for people without aphasia, and pandas' default NA
parsing would turn that into a null. So tables are read with every cell as text
(``keep_default_na=False``) and converted here, per declared type, with ``n/a`` as the only
null spelling (plus an empty cell for numbers, which cannot be anything else).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._errors import InputError
from ._util import shown

if TYPE_CHECKING:
    from ._schema import MetaColumn

NULL = "n/a"
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
SESSIONS_TABLE = "sessions.tsv"


class TableError(InputError, ValueError):
    """A metadata table is missing, lacks a declared column, or holds a value of the wrong type."""


@dataclass(frozen=True)
class TableRow:
    subject: str  # label without "sub-"
    session: str | None  # label without "ses-", or None for per-subject tables
    values: dict[str, Any]


def read_tsv(path: Path) -> pd.DataFrame:
    """Every cell as the text written in the file (no NA guessing)."""
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise TableError(f"Cannot read {path.name}: {err}. Check it is tab-separated UTF-8 "
                         "text.") from err


def convert(value: str, dtype: str, where: str) -> Any:
    """Convert one cell to ``dtype``; ``where`` names the file, line and column for errors."""
    text = value.strip()
    if text == NULL:
        return None
    if dtype == "string":
        return value
    if text == "":
        return None
    try:
        if dtype in ("float32", "float64"):
            number = float(text)
            return None if math.isnan(number) else number
        if dtype in ("int32", "int64"):
            return int(text)
        if dtype == "bool":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
    except ValueError:
        raise TableError(
            f"{where}: {value!r} is not a valid {dtype}. Write a {dtype} value or n/a for "
            f"missing, or declare the column as 'string' in schema.py."
        ) from None
    raise TableError(f"{where}: unsupported type {dtype!r}")


def load_table(root: Path, table: str, columns: Mapping[str, MetaColumn]) -> list[TableRow]:
    """Read one declared metadata table into typed rows keyed by subject (and session);
    values are keyed by each column's output name."""
    if table == SESSIONS_TABLE:
        rows: list[TableRow] = []
        for path in sessions_tables(root):
            subject = path.parent.name[4:]
            rows += _table_rows(root, path, columns, subject=subject)
        return rows
    path = root / table
    if not path.is_file():
        raise TableError(
            f"Metadata table {table} declared in schema.py does not exist under the BIDS root. "
            "Fix the path or remove it from metadata=."
        )
    return _table_rows(root, path, columns, subject=None)


def sessions_tables(root: Path) -> list[Path]:
    """Every ``sub-*/sub-*_sessions.tsv``: what schema.py calls ``"sessions.tsv"``."""
    return sorted(root.glob("sub-*/sub-*_sessions.tsv"))


def _table_rows(
    root: Path, path: Path, columns: Mapping[str, MetaColumn], subject: str | None
) -> list[TableRow]:
    frame = read_tsv(path)
    rel = shown(path.relative_to(root).as_posix())
    key = "session_id" if subject is not None else "participant_id"
    if key not in frame.columns:
        raise TableError(f"{rel} has no {key} column (columns: {', '.join(frame.columns)}).")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableError(
            f"{rel} lacks the column(s) {', '.join(missing)} declared in schema.py "
            f"(it has: {', '.join(frame.columns)})."
        )
    has_session = subject is None and "session_id" in frame.columns
    out: list[TableRow] = []
    for line, record in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        if subject is None:
            sub = _strip(record["participant_id"], "sub-")
            ses = _strip(record["session_id"], "ses-") if has_session else None
        else:
            sub, ses = subject, _strip(record["session_id"], "ses-")
        values = {
            spec.name or col: convert(record[col], spec.dtype, f"{rel} line {line}, column {col}")
            for col, spec in columns.items()
        }
        out.append(TableRow(sub, ses, values))
    return out


def _strip(value: str, prefix: str) -> str:
    value = value.strip()
    return value.removeprefix(prefix)
