"""Shard plan: which rows go in which shard and row group, decided up front from file sizes.

``datasets`` 5.2 sizes shards from ``Dataset._estimate_nbytes``, which counts external files
for Audio/Image/Video but not ``Nifti`` (a 2.6 GB tree is estimated at 49 KB -> one shard),
and gives ``Nifti`` no small writer batch size (1000-row batches). We never ask it: the
plan packs rows, in their natural order, into shards of at most ``max_shard_size`` bytes of
embedded files and row groups of at most ``row_group_size`` bytes (a row larger than that
is its own row group), so names are known before anything is written and memory is
bounded by one row group.

Boundaries are content-defined, as Parquet's content-defined chunking is for pages: once a
shard holds half its maximum, it ends after a row whose key hashes to a cut point (or when
the next row would not fit). Adding or removing a subject therefore moves the boundaries of
its own shard only; the other shards keep their rows and their bytes, and a re-publish
sends little more than the new subject.

Every shard carries a fingerprint of what it will contain (features, schema, its rows'
values, each source file's path and size). A shard on disk is reused only when that
fingerprint matches *and* its sources still hash to the bytes it embeds (``_commit``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._errors import InputError
from ._rows import Row, RowSet
from ._util import human_bytes, parse_size, sha256_text

#: Bumped when the bytes written for the same input would change (invalidates old shards).
FORMAT_VERSION = "3"
# One row group per file, of at most 32 MB. A consumer streaming the dataset holds about ten
# times one file in memory (pyarrow pre-buffers every row group of an open file, see
# apache/arrow#39808, and fsspec and datasets each keep copies), so small files keep streaming
# memory small and flat; a build holds one row group plus the largest row. The Hub takes
# fewer than 10,000 files per folder: past AUTO_MAX_FILES shards (256 GB) files grow.
DEFAULT_MAX_SHARD_SIZE = "32MB"
DEFAULT_ROW_GROUP_SIZE = "32MB"
AUTO_MAX_FILES = 8_000
# The Hub's dataset viewer refuses to scan more than this many bytes at once (one row group
# of the columns it shows): a row larger than that cannot be previewed.
VIEWER_SCAN_LIMIT = 300_000_000
# One Arrow ``binary`` array holds at most 2 GiB; a single row's column above that cannot
# be written (``Nifti`` storage is ``binary``, not ``large_binary``).
_ARROW_BINARY_LIMIT = 2**31 - 1 - (1 << 20)


class PlanError(InputError, ValueError):
    """The rows cannot be laid out (a single cell too large for Arrow, an empty split)."""


@dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    count: int
    rows: tuple[int, ...]  # indices into RowSet.rows
    row_groups: tuple[tuple[int, ...], ...]  # the same indices, grouped
    nbytes: int  # bytes of embedded files
    fingerprint: str
    configs: tuple[str, ...] = ()  # each also gets a file of its own columns, same rows

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.count)

    def config_file(self, config: str) -> str:
        """``data/<config>/<split>-NNNNN-of-MMMMM.parquet``: the same rows, its columns."""
        return shard_name(self.split, self.index, self.count, config)

    @property
    def files(self) -> list[str]:
        """Every file this shard writes: the full table first, then one per config."""
        return [self.name, *(self.config_file(c) for c in self.configs)]


@dataclass(frozen=True)
class ShardPlan:
    shards: tuple[ShardSpec, ...]
    fingerprint: str
    max_shard_size: int
    row_group_size: int
    # Every source's path, size and mtime: job-array tasks refuse to build from a tree that
    # changed since --plan-only (shards themselves are checked by content when reused).
    sources_stamp: str = ""

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.shards)

    def describe(self) -> str:
        groups = sum(len(s.row_groups) for s in self.shards)
        return (f"{len(self.shards)} shard(s), {groups} row group(s), "
                f"{human_bytes(self.nbytes)} of images")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ShardPlan:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardPlan:
        data = dict(data)
        shards = tuple(
            ShardSpec(**{**s, "rows": tuple(s["rows"]),
                         "row_groups": tuple(tuple(g) for g in s["row_groups"]),
                         "configs": tuple(s.get("configs", ()))})
            for s in data.pop("shards")
        )
        return cls(shards=shards, **data)

    def select(self, spec: str | None) -> list[ShardSpec]:
        """Shards named by ``--shards`` (``"3"``, ``"0-9"``, ``"0-4,7"``; global indices in plan
        order). A range may run past the last shard (job arrays with several shards per
        task); it may not start past it."""
        if not spec:
            return list(self.shards)
        chosen: set[int] = set()
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            try:
                start, stop = int(lo), int(hi or lo)
            except ValueError:
                raise PlanError(f"--shards {spec!r}: use a number, a range like 0-9, or a list "
                                "like 0-4,7.") from None
            if start > stop or start >= len(self.shards):
                raise PlanError(f"--shards {spec!r}: the plan has shards 0-{len(self.shards) - 1}.")
            chosen.update(range(start, min(stop, len(self.shards) - 1) + 1))
        return [s for i, s in enumerate(self.shards) if i in chosen]


def plan_shards(
    rowset: RowSet,
    max_shard_size: int | str | None = None,
    row_group_size: int | str | None = None,
) -> ShardPlan:
    """Pack the rows into shards and row groups. Sizes left ``None`` take the defaults, and
    the shard size then grows as needed to stay under the Hub's files-per-folder limit."""
    total = sum(r.nbytes for r in rowset.rows)
    max_shard = parse_size(max_shard_size or DEFAULT_MAX_SHARD_SIZE)
    if max_shard_size is None and total / max_shard > AUTO_MAX_FILES:
        max_shard = -(-total // AUTO_MAX_FILES)
    # A row group's image column is one Arrow binary array (32-bit offsets).
    max_group = min(parse_size(row_group_size or DEFAULT_ROW_GROUP_SIZE), max_shard,
                    _ARROW_BINARY_LIMIT)
    _check_cells(rowset)
    base = [FORMAT_VERSION, json.dumps(rowset.features.to_dict(), sort_keys=True),
            rowset.schema.fingerprint_text()]
    shards: list[ShardSpec] = []
    for split in rowset.splits:
        indices = [i for i, r in enumerate(rowset.rows) if r.split == split]
        packed = _pack(indices, rowset.rows, max_shard)
        for n, shard_rows in enumerate(packed):
            groups = _pack(shard_rows, rowset.rows, max_group)
            spec_rows = tuple(shard_rows)
            name = shard_name(split, n, len(packed))
            fp = sha256_text([*base, name, *(_row_text(rowset.rows[i]) for i in spec_rows),
                              json.dumps([len(g) for g in groups])])
            shards.append(ShardSpec(
                split=split, index=n, count=len(packed), rows=spec_rows,
                row_groups=tuple(tuple(g) for g in groups),
                nbytes=sum(rowset.rows[i].nbytes for i in spec_rows), fingerprint=fp,
                configs=tuple(rowset.schema.configs),
            ))
    if not shards:
        raise PlanError("The dataset has no rows: no subject folders matched the schema.")
    _check_hub_limits(shards, max_shard)
    return ShardPlan(
        shards=tuple(shards),
        fingerprint=sha256_text([*base, *(s.fingerprint for s in shards)]),
        max_shard_size=max_shard,
        row_group_size=max_group,
        sources_stamp=sha256_text(f"{f.path}\t{f.size}\t{f.mtime_ns}" for r in rowset.rows
                                  for _, f in r.files()),
    )


def data_folder(config: str | None = None) -> str:
    """Where Parquet files go in a staged folder: ``data``, a config's in ``data/<config>``."""
    return f"data/{config}" if config else "data"


def shard_name(split: str, index: int, count: int, config: str | None = None) -> str:
    """The file name of a shard, as ``datasets``' own ``push_to_hub`` names them (a config's
    files in a folder of their own)."""
    return f"{data_folder(config)}/{split}-{index:05d}-of-{count:05d}.parquet"


def config_of(file: str) -> str | None:
    """The config whose columns a shard file holds (``data/<config>/<file>``); ``None`` for
    the full table (``data/<file>``)."""
    parts = file.split("/")
    return parts[1] if len(parts) > 2 else None


def _pack(indices: Sequence[int], rows: list[Row], limit: int) -> list[list[int]]:
    """Contiguous packing in order, with content-defined boundaries (see the module docstring):
    a bin closes after a row that is a cut point once it is half full, or when the next row
    would not fit."""
    bins: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in indices:
        n = rows[i].nbytes
        if current and size + n > limit:
            bins.append(current)
            current, size = [], 0
        current.append(i)
        size += n
        if size >= limit // 2 and _is_cut_point(rows[i].key):
            bins.append(current)
            current, size = [], 0
    if current:
        bins.append(current)
    return bins


def _is_cut_point(key: str) -> bool:
    """About one row in four, decided by the row's key alone (stable across runs)."""
    return hashlib.sha256(key.encode()).digest()[0] < 64


def _row_text(row: Row) -> str:
    # Sizes, not mtimes: a copy that does not keep mtimes must not rebuild everything;
    # changed content is caught by the source hashes checked before a shard is reused.
    files = [(col, f.path, f.size) for col, f in row.files()]
    return json.dumps([row.key, row.split, files, _jsonable(row.values)], sort_keys=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _check_cells(rowset: RowSet) -> None:
    for row in rowset.rows:
        for column, files in row.images.items():
            total = sum(max(f.size, 0) for f in files)
            if total > _ARROW_BINARY_LIMIT:
                raise PlanError(
                    f"Row {row.key}, column {column!r}: its {len(files)} file(s) hold "
                    f"{human_bytes(total)}, above the 2 GiB one Arrow binary value list can "
                    "hold. Split the column (e.g. one column per run or task) or use "
                    "row='image'."
                )


# The Hub's documented limits: fewer than 100k files per repo and 10k per folder; files
# under 20 GB recommended (50 GB is the hard maximum). A plan beyond them is refused before
# anything is built, with the flag that fixes it.
HUB_MAX_FILES_PER_FOLDER = 10_000
HUB_MAX_FILE_SIZE = 20 * 10**9


def _check_hub_limits(shards: list[ShardSpec], max_shard: int) -> None:
    if max_shard > HUB_MAX_FILE_SIZE:
        raise PlanError(f"--max-shard-size {human_bytes(max_shard)} is above the 20 GB the Hub "
                        "recommends per file; use 500MB to 5GB.")
    if len(shards) >= HUB_MAX_FILES_PER_FOLDER:
        total = sum(s.nbytes for s in shards)
        fits = human_bytes(total / AUTO_MAX_FILES)
        raise PlanError(f"The plan has {len(shards)} shards, over the Hub's limit of "
                        f"{HUB_MAX_FILES_PER_FOLDER:,} files in one folder (data/). Raise "
                        f"--max-shard-size (e.g. to {fits}).")


def read_plan(path: Path) -> ShardPlan:
    return ShardPlan.from_json(path.read_text(encoding="utf-8"))
