"""Where the review page's images come from: the BIDS tree, or a staged folder's Parquet shards.

Both answer the same questions: is a referenced image there (``missing``), and what to read
for it (``image``). From the tree, a file is served only when its real path stays inside the
dataset folder (a symlink that leaves it is refused). From a staged folder, the bytes are
those that will be published: opening reads only the id columns and each image's ``path``
field to locate every image; serving one reads only its column in its row group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ._errors import InputError
from ._plan import data_folder
from ._rows import Row, row_ids


class ReviewError(InputError):
    """The review page cannot be served as asked (a non-loopback address, a folder without
    shards, a port in use): push.py exits 2 with the message, no traceback."""


class TreeSource:
    """Images read from the BIDS tree; a symlink that leaves the tree is refused."""

    kind = "BIDS folder"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._real_root = self.root.resolve()
        self.name = self.root.name

    def missing(self, path: str) -> str | None:
        return None if self.locate(path) else "not a readable file inside the dataset folder"

    def locate(self, path: str) -> Path | None:
        try:
            real = (self.root / path).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, broken link, or a symlink loop
            return None
        if not real.is_relative_to(self._real_root) or not real.is_file():
            return None
        return real

    def image(self, path: str) -> Path | None:
        """The file to read (slices are read from it a slab at a time)."""
        return self.locate(path)


@dataclass(frozen=True)
class _Cell:
    file: Path
    row_group: int
    row: int  # within the row group
    column: str
    item: int | None  # None: a single-image column


class StagedSource:
    """Images read from a staged folder's Parquet shards, the bytes that will be published.

    Opening reads only each row group's id columns and the ``path`` field of the image
    columns (a few bytes per image) to locate every image; serving one reads only its
    column in its row group."""

    kind = "staged folder"

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.name = self.out.name
        files = sorted((self.out / data_folder()).glob("*.parquet"))
        if not files:
            raise ReviewError(f"{self.out}: no data/*.parquet in this staged folder. Stage it "
                              "first (push.py --out), or review the BIDS folder without --out.")
        self.cells: dict[str, _Cell] = {}
        self.rows: set[tuple[str | None, str | None]] = set()
        self.sessions = False
        for file in files:
            parquet = pq.ParquetFile(file)
            schema = parquet.schema_arrow
            leaves = {name: leaf for name in schema.names
                      if (leaf := _path_leaf(schema.field(name).type, name))}
            ids = [c for c in ("subject_id", "session_id") if c in schema.names]
            self.sessions |= "session_id" in ids
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=ids + list(leaves.values()))
                subjects = (table.column("subject_id").to_pylist()
                            if "subject_id" in ids else [None] * table.num_rows)
                sessions = (table.column("session_id").to_pylist()
                            if "session_id" in ids else [None] * table.num_rows)
                self.rows.update(zip(subjects, sessions, strict=True))
                for name in leaves:
                    for row, value in enumerate(table.column(name).to_pylist()):
                        items = value if isinstance(value, list) else [value]
                        for item, cell in enumerate(items):
                            if cell and cell.get("path"):
                                self.cells.setdefault(cell["path"], _Cell(
                                    file, group, row, name,
                                    item if isinstance(value, list) else None))

    def missing(self, path: str) -> str | None:
        return None if path in self.cells else "not in the staged Parquet files"

    def has_row(self, row: Row) -> bool:
        """Whether a staged row carries this row's ids (``session_id`` when staged)."""
        ids = row_ids(row, "session" if self.sessions else "subject")
        return (ids["subject_id"], ids.get("session_id")) in self.rows

    def image(self, path: str) -> bytes | None:
        """The bytes of the Parquet cell that holds ``path``."""
        cell = self.cells.get(path)
        if cell is None:
            return None
        parquet = pq.ParquetFile(cell.file)
        kind = parquet.schema_arrow.field(cell.column).type
        leaf = f"{cell.column}.list.element.bytes" if _is_list(kind) else f"{cell.column}.bytes"
        column = parquet.read_row_group(cell.row_group, columns=[leaf]).column(cell.column)
        value = column[cell.row].as_py()
        if cell.item is not None:
            value = value[cell.item]
        data = value.get("bytes") if value else None
        return bytes(data) if data is not None else None


def _is_list(kind: Any) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _path_leaf(kind: Any, name: str) -> str | None:
    """The Parquet column path of an image column's ``path`` field (None: not an image)."""

    def is_image(t: Any) -> bool:
        return bool(pa.types.is_struct(t) and t.get_field_index("bytes") >= 0
                    and t.get_field_index("path") >= 0)

    if is_image(kind):
        return f"{name}.path"
    if _is_list(kind) and is_image(kind.value_type):
        return f"{name}.list.element.path"
    return None


Source = TreeSource | StagedSource
