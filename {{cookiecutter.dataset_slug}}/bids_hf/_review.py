"""The review page: a local, read-only web page of the rows as the schema assembles them.

Medical images go public only once a person has looked at them. ``serve_review`` serves, on
the loopback interface only, one page listing every row (subject, session, metadata, a
thumbnail per image column) with the findings of the checks beside the rows they concern;
opening a row shows its images in NiiVue: multiplanar slices with masks overlaid on the
anatomy, and a 3D render in which a face left on a scan is plain to see.

This module is the server. The page's data, its thumbnails and the viewer are
``_review_page``'s; images come from the BIDS tree or, given a staged folder, from its
Parquet shards, the bytes that will be published (``_review_sources``). The server answers
GET and HEAD only, and only for the page, its assets and the images that the rows
reference; anything else, including ``..``, absolute paths and symlinks that leave the
dataset folder, is a 404. It checks the ``Host`` header too, so a web page elsewhere cannot
reach it through a DNS name pointed at 127.0.0.1.

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
import os
import re
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ._qc import mask_columns_of
from ._review_page import (
    PageImage,
    ReviewFinding,
    Thumbnails,
    find_viewer,
    page_data,
    page_images,
    viewer_instructions,
)
from ._review_sources import ReviewError, Source, StagedSource, TreeSource
from ._rows import RowSet
from ._slices import SliceError

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).with_name("review_page")
_ASSETS = {"review.js": "text/javascript", "review.css": "text/css"}


@dataclass
class _Site:
    """Everything the server answers with, computed once at start (thumbnails on demand)."""

    page: bytes
    images: dict[str, PageImage]
    source: Source
    viewer: Path | None
    thumbnails: Thumbnails


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
        if isinstance(source, TreeSource):
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
            png = site.thumbnails.png(clean)
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
    source: Source = (StagedSource(staged) if staged is not None
                      else TreeSource(rowset.index.root))
    images = page_images(rowset, set(mask_columns_of(rowset)))
    found = list(findings)
    if isinstance(source, StagedSource):
        found += [ReviewFinding(None, row.key, "error", "row staged",
                                f"{row.key}: no row of the staged folder has these ids")
                  for row in rowset.rows if not source.has_row(row)]
    for image in images:
        if (why := source.missing(image.path)) is not None:
            found.append(ReviewFinding(image.path, rowset.rows[image.row].key, "error",
                                       "image available", f"{image.path}: {why}"))
    viewer = find_viewer()
    page = page_data(rowset, found, images, source, viewer)
    by_path = {i.path: i for i in images}
    site = _Site(page=json.dumps(page, ensure_ascii=False).encode(), images=by_path,
                 source=source, viewer=viewer, thumbnails=Thumbnails(source, by_path))
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
