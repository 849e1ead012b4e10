"""Arrow and Parquet: a row group's images in one buffer, the table over it, and the writer.

* A row group's files go into **one buffer**, a fresh anonymous memory map (``Layout`` says
  where each file goes: one contiguous region per image column). No Python ``bytes`` per
  file, and the map is unmapped as soon as Arrow lets go of it.
* The **table** points into that buffer without copying: each image column is
  ``struct<bytes, path>`` (or a list of them) whose ``path`` is the BIDS-relative path
  (``datasets``' own embedding keeps only the basename).
* The **writer** is ``datasets.arrow_writer.ParquetWriter``, so files carry ``datasets``'
  conventions (no compression and PLAIN encoding on embedded bytes, content-defined
  chunking for Xet dedup, page index, ``huggingface`` schema metadata that restores
  ``Nifti``), with Parquet statistics off for embedded bytes (min/max copies of images).
* ``embedded_hashes`` reads the images of a written column back, for the shard's check.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Iterator

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter, get_parquet_column_options

from ._index import BidsFile
from ._rows import Row, row_ids

_NIFTI_TYPE = pa.struct({"bytes": pa.binary(), "path": pa.string()})


class Layout:
    """Where each file of a row group goes in the group's buffer: one contiguous region per
    image column, files in storage order (rows, then list items)."""

    def __init__(self, rows: list[Row], image_columns: dict[str, bool]) -> None:
        self.columns: dict[str, tuple[int, list[BidsFile | None], list[int],
                                      list[int] | None]] = {}
        self.files: list[tuple[BidsFile, int, int]] = []  # file, start, end
        pos = 0
        for column, is_list in image_columns.items():
            cells = [r.images.get(column, []) for r in rows]
            list_offsets: list[int] | None
            if is_list:
                slots: list[BidsFile | None] = [f for cell in cells for f in cell]
                counts = [0]
                for cell in cells:
                    counts.append(counts[-1] + len(cell))
                list_offsets = counts
            else:  # one slot per row; a row without a file gets an empty slot, masked as null
                slots, list_offsets = [cell[0] if cell else None for cell in cells], None
            start, offsets = pos, [0]
            for f in slots:
                size = f.size if f is not None else 0
                if f is not None:
                    self.files.append((f, pos, pos + size))
                pos += size
                offsets.append(pos - start)
            self.columns[column] = (start, slots, offsets, list_offsets)
        self.total = pos


def blob_buffer(size: int) -> tuple[pa.Buffer, memoryview]:
    """A fresh anonymous memory map for one row group's file bytes, as an Arrow buffer.

    Row groups vary in size; allocators keep freed blocks of one size class around for
    reuse, which grew RSS across row groups by up to 280 MB in our measurements. A private
    map is unmapped as soon as the last Arrow reference to it goes.
    """
    if size == 0:
        return pa.py_buffer(b""), memoryview(bytearray())
    # MAP_POPULATE maps all pages at once instead of one page fault per 4 KB on first write.
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    mapped = mmap.mmap(-1, size, flags=flags)
    return pa.py_buffer(mapped), memoryview(mapped)


def table(rows: list[Row], layout: Layout, buffer: pa.Buffer, features: datasets.Features,
          image_columns: dict[str, bool], schema_row: str) -> pa.Table:
    """The row group as a table: image columns over ``buffer``, the other cells as typed."""
    schema = features.arrow_schema
    ids = [row_ids(r, schema_row) for r in rows]
    arrays: list[pa.Array] = []
    for field_ in schema:
        name = field_.name
        if name in image_columns:
            arrays.append(_nifti_array(layout, name, buffer))
        else:
            values = [ids[i][name] if name in ids[i] else r.values.get(name)
                      for i, r in enumerate(rows)]
            arrays.append(pa.array(values, type=field_.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _nifti_array(layout: Layout, column: str, buffer: pa.Buffer) -> pa.Array:
    """The column's images as Arrow, pointing into the group's buffer (no copy):
    ``struct<bytes, path>`` or a list of them per row."""
    start, slots, offsets, list_offsets = layout.columns[column]
    data = buffer.slice(start, offsets[-1])
    offsets_buf = pa.array(offsets, type=pa.int32()).buffers()[1]
    blobs = pa.Array.from_buffers(pa.binary(), len(slots), [None, offsets_buf, data])
    paths = pa.array([f.path if f is not None else None for f in slots], type=pa.string())
    missing = [f is None for f in slots]
    mask = pa.array(missing, type=pa.bool_()) if any(missing) else None
    structs = pa.StructArray.from_arrays([blobs, paths], fields=list(_NIFTI_TYPE), mask=mask)
    if list_offsets is None:
        return structs
    return pa.ListArray.from_arrays(pa.array(list_offsets, type=pa.int32()), structs)


class EmbeddedParquetWriter(ParquetWriter):  # type: ignore[misc]  # datasets: no type info
    """``datasets``' ParquetWriter with statistics off for embedded-file columns.

    Parquet statistics keep min/max *values* per page and column chunk: for embedded images
    that is copies of whole files, which doubled the writer's peak memory in our measurement
    (72 MB over a 77 MB row group; 24 MB without) and serves no query. Everything else —
    column options, content-defined chunking, page index, metadata — is datasets' own.
    """

    def _build_writer(self, inferred_schema: pa.Schema) -> None:
        self._schema, self._features = self._build_schema(inferred_schema)
        options = get_parquet_column_options(self._features, self._schema)
        # datasets' options list the non-embedded leaves as the dictionary-encoded ones
        # (setdefault: a datasets release with upstream's statistics patch sets it itself).
        options.setdefault("write_statistics", list(options["use_dictionary"]))
        self.pa_writer = pq.ParquetWriter(
            self.stream,
            self._schema,
            use_content_defined_chunking=self.use_content_defined_chunking,
            write_page_index=self.write_page_index,
            **options,
        )
        if self.use_content_defined_chunking is not False:
            self.pa_writer.add_key_value_metadata(
                {"content_defined_chunking": json.dumps(self.use_content_defined_chunking)})


def abandon(writer: ParquetWriter) -> None:
    """Forget a writer whose file is being deleted. After a failed write pyarrow's writer
    still counts itself open, and its ``__del__`` would later write a footer into the closed
    file: "Exception ignored ... Invalid operation on closed file" and a traceback on stderr,
    after the run's own message."""
    if writer.pa_writer is not None:
        writer.pa_writer.is_open = False


def embedded_hashes(array: pa.Array | pa.ChunkedArray,
                    is_list: bool) -> Iterator[tuple[str, str]]:
    """(stored path, sha256 of stored bytes) of every image in an image column, in order."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    structs = array.flatten() if is_list else array.filter(array.is_valid())
    blobs, paths = structs.flatten()  # offset-aware children: bytes, path
    offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[
        blobs.offset: blobs.offset + len(blobs) + 1]
    data = blobs.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    for k, p in enumerate(paths.to_pylist()):
        yield p, hashlib.sha256(view[offsets[k]:offsets[k + 1]]).hexdigest()
