"""Requests and replies as the Hub logic sees them, independent of the HTTP plumbing.

``HubError`` is an error answered as the Hub does it: JSON ``{"error": msg}`` with the
``X-Error-Message`` and ``X-Error-Code`` headers that huggingface_hub turns into typed errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 64 * 1024
MAX_BUFFERED_BODY = 1024**3  # JSON/NDJSON bodies are read in memory (Hub commits cap at 1 GB)


class HubError(Exception):
    """An error answered as the Hub does: JSON ``{"error": msg}`` plus X-Error-* headers."""

    def __init__(
        self, status: int, message: str, code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}


@dataclass
class Route:
    """What a URL path names. ``repo_type`` is "model", "dataset" or "space"."""

    name: str
    repo_type: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    path: str = ""  # a file or folder in the repo, or the rest of a test-only path


class Body:
    """Request body reader for both Content-Length and chunked transfer encoding."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self.remaining = 0 if self.chunked else int(headers.get("Content-Length") or 0)
        self.present = self.chunked or self.remaining > 0
        self.done = not self.present
        self.received = 0
        self._chunk_left = 0

    def read(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes; b"" at the end of the body."""
        if self.done:
            return b""
        if self.chunked:
            if self._chunk_left == 0:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self.done = True
                    return b""
                self._chunk_left = size
            data = self.rfile.read(min(n, self._chunk_left))
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.rfile.readline()
        else:
            data = self.rfile.read(min(n, self.remaining))
            self.remaining -= len(data)
            self.done = self.remaining == 0
        if not data:
            raise ConnectionError("client closed the connection mid-body")
        self.received += len(data)
        return data

    def read_all(self) -> bytes:
        parts = []
        while chunk := self.read():
            parts.append(chunk)
            if self.received > MAX_BUFFERED_BODY:
                raise HubError(413, "Payload too large")
        return b"".join(parts)

    def drain(self) -> None:
        """Read what the handler did not, so the keep-alive connection stays in sync."""
        while self.read():
            pass


@dataclass
class Request:
    method: str
    route: Route
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage
    body: Body
    user: str | None = None  # authenticated user name, None for anonymous

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def flag(self, name: str) -> bool:
        return self.arg(name).lower() in ("1", "true")

    def json(self) -> Any:
        return json.loads(self.body.read_all() or b"{}")


@dataclass
class Reply:
    """A reply: ``body`` bytes, or ``length`` bytes of ``file`` from ``start``, or the
    chunks of ``stream`` (``length`` bytes in all). ``counters`` name the stats keys that
    the bytes sent are added to (for the route's repo)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    stream: Iterator[bytes] | None = None
    start: int = 0
    length: int = 0
    counters: tuple[str, ...] = ()

    @property
    def content_length(self) -> int:
        return self.length if self.file is not None or self.stream is not None else len(self.body)


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/json",
                                                     **(headers or {})})


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (start, end); None if no
    header; HubError 416 if unsatisfiable."""
    if not header:
        return None
    unsatisfiable = HubError(416, "Range not satisfiable",
                             headers={"Content-Range": f"bytes */{total}"})
    spec = header.strip()
    if not spec.startswith("bytes=") or "," in spec:
        raise unsatisfiable
    first, sep, last = spec[len("bytes="):].partition("-")
    first, last = first.strip(), last.strip()
    digits = (first or "0").isdigit() and (last or "0").isdigit()
    if not sep or not (first or last) or not digits:
        raise unsatisfiable
    if first:
        start, end = int(first), min(int(last) if last else total - 1, total - 1)
    else:  # suffix range: the last N bytes
        start, end = max(total - int(last), 0), total - 1
    if start >= total or start > end:
        raise unsatisfiable
    return start, end
