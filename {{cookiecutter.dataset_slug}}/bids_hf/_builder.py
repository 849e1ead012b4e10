"""``BidsBuilder``: a ``datasets.GeneratorBasedBuilder`` driven by a ``Schema``.

A generated repo subclasses it with a handful of class attributes::

    class ArcBuilder(BidsBuilder):
        SCHEMA = schema.SCHEMA
        DATASET_ID = "arc"

and uses it locally (``datasets`` 5.x runs no loading scripts, from the Hub or from disk)::

    builder = ArcBuilder(data_dir="/data/ds004884")
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")

The rows are the ones push.py writes (same index, same row assembly); only the writer
differs: here ``datasets`` writes its Arrow cache, push.py writes the Hub's Parquet shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import datasets

from ._card import CardMeta
from ._index import index_bids
from ._rows import RowSet, assemble_rows, row_ids
from ._schema import Schema
from ._util import parse_size

# Rows per Arrow record batch are chosen so a batch holds about this many bytes of images:
# datasets gives Nifti no small default (it would buffer 1000 rows).
_BATCH_BYTES = parse_size("100MB")


class BidsBuilder(datasets.GeneratorBasedBuilder):  # type: ignore[misc]  # no type info
    """Base class of every generated dataset builder. Set ``SCHEMA`` and ``DATASET_ID``."""

    SCHEMA: ClassVar[Schema]
    DATASET_ID: ClassVar[str] = "bids-dataset"
    PRETTY_NAME: ClassVar[str | None] = None
    LICENSE: ClassVar[str] = "auto"  # or a Hub license id; "auto" maps dataset_description.json
    HF_REPO_ID: ClassVar[str | None] = None
    TAGS: ClassVar[tuple[str, ...]] = ()
    GATED: ClassVar[bool] = False
    VERSION = datasets.Version("1.0.0")

    _rowset: RowSet | None = None
    _writer_batch_size: int | None  # set by datasets' __init__; chosen from file sizes in _info

    @classmethod
    def card_meta(cls, repo_id: str | None = None) -> CardMeta:
        return CardMeta(slug=cls.DATASET_ID, pretty_name=cls.PRETTY_NAME, license=cls.LICENSE,
                        repo_id=repo_id or cls.HF_REPO_ID, tags=tuple(cls.TAGS), gated=cls.GATED)

    def rowset(self) -> RowSet:
        if self._rowset is None:
            root = self.config.data_dir
            if not root:
                raise ValueError(f"{type(self).__name__} needs the BIDS root: "
                                 f"{type(self).__name__}(data_dir='/path/to/bids').")
            self._rowset = assemble_rows(index_bids(root), self.SCHEMA)
        return self._rowset

    def _info(self) -> datasets.DatasetInfo:
        rowset = self.rowset()
        if self._writer_batch_size is None and rowset.rows:
            largest = max(r.nbytes for r in rowset.rows) or 1
            self._writer_batch_size = max(1, _BATCH_BYTES // largest)
        return datasets.DatasetInfo(
            description=str(rowset.index.description.get("Name", self.DATASET_ID)),
            features=rowset.features,
            license=str(rowset.index.description.get("License", "")),
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        rowset = self.rowset()
        if Path.cwd().resolve() == rowset.index.root.resolve():
            # datasets' Nifti.encode_example drops the embedded bytes of a value whose
            # `path` exists relative to the working directory; BIDS-relative paths do
            # exactly that when run from the root.
            raise RuntimeError("Run the builder from outside the BIDS root (cd elsewhere).")
        blocking = [c for c in rowset.checks if c.blocking]
        if blocking:
            details = "\n".join(f"- {c.name}: {c.details}" for c in blocking)
            raise ValueError(f"The schema does not apply cleanly to {rowset.index.root}:\n"
                             f"{details}")
        return [datasets.SplitGenerator(name=split, gen_kwargs={"split": split})
                for split in rowset.splits]

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        rowset = self.rowset()
        root = rowset.index.root
        for row in rowset.rows_of(split):
            example: dict[str, Any] = {**row_ids(row, rowset.schema.row), **row.values}
            for column, is_list in rowset.image_columns.items():
                cells = [{"path": f.path, "bytes": _read(root / f.path)}
                         for f in row.images.get(column, ())]
                example[column] = cells if is_list else (cells[0] if cells else None)
            yield row.key, example


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()

