"""HTTP plumbing (a threading, keep-alive ``http.server``), the in-process ``HubServer`` and
``HubAdminClient`` for a server in another process.

Every request is logged (method, path, route, status: never headers, so never tokens),
counted per repo and matched against pending faults before the Hub handles it; the admin API
and the server's own Xet bridge requests are exempt.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import logging
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from . import admin
from .faults import FaultSet
from .hub import DEFAULT_LFS_THRESHOLD, Hub
from .protocol import CHUNK, Body, HubError, Reply, Request, Route, json_reply
from .routes import parse_route

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

logger = logging.getLogger("hubserver")


class _Abort(Exception):
    """Raised to reset the client connection (fault injection)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    server_version = "LocalHub/2.0"
    timeout = 120  # never block a handler thread forever on an idle connection
    server: _HTTPServer
    _log_entry: dict[str, Any]

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)  # request line, no headers

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _dispatch(self) -> None:
        """Log, apply faults, then let the Hub answer; errors become Hub-style JSON."""
        hub, method, split = self.server.hub, self.command, urlsplit(self.path)
        route = parse_route(split.path)
        req = Request(method, route, parse_qs(split.query, keep_blank_values=True),
                      self.headers, Body(self.rfile, self.headers))
        entry = self._log_entry = {"method": method, "path": split.path, "route": route.name,
                                   "status": None}
        observed = route.name != "admin" and not hub.is_internal(req)
        if observed:
            hub.request_log.append(entry)
            hub.count(route.repo_type, route.repo_id, f"requests.{route.name}")
        drop_after: int | None = None
        try:
            for fault in hub.faults.take(method, split.path) if observed else []:
                if fault.kind == "delay":
                    time.sleep(fault.seconds)
                elif fault.kind == "status":
                    after = fault.retry_after
                    retry = {} if after is None else {"Retry-After": str(after)}
                    raise HubError(fault.status, fault.error_message, headers=retry)
                elif req.body.present and not fault.on_response:  # an upload: cut while receiving
                    self._receive_then_drop(req, fault.after_bytes)
                else:  # a download, or a lost reply: cut while sending
                    drop_after = fault.after_bytes
            reply = hub.handle(req)
        except _Abort:
            return
        except HubError as e:
            # Header values must be latin-1: keep this one ASCII, the JSON body has the full text.
            ascii_message = e.message.encode("ascii", "replace").decode()
            headers = {**e.headers, "X-Error-Message": ascii_message}
            if e.code:
                headers["X-Error-Code"] = e.code
            reply = json_reply({"error": e.message}, e.status, headers)
        except (json.JSONDecodeError, UnicodeDecodeError, binascii.Error) as e:
            reply = json_reply({"error": f"Malformed request body: {e}"}, 400)
        except (ConnectionError, TimeoutError):
            entry["status"] = "client-disconnected"
            self.close_connection = True
            return
        except Exception as e:  # a bug in this server: answer 500 rather than hang the client
            logger.exception("internal error on %s %s", method, split.path)
            reply = json_reply({"error": f"Internal error: {type(e).__name__}"}, 500)
        entry["status"] = reply.status
        try:
            req.body.drain()
            self._send(reply, req.route, drop_after)
        except _Abort:
            pass
        except (ConnectionError, TimeoutError):
            entry["status"] = "client-disconnected"
            self.close_connection = True
        except Exception:  # e.g. the Xet bridge failed mid-stream: the client sees a cut
            logger.exception("error while sending %s %s", method, split.path)
            entry["status"] = "send-failed"
            self.close_connection = True

    def _receive_then_drop(self, req: Request, after_bytes: int) -> None:
        body = req.body
        while body.received < after_bytes and (chunk := body.read(after_bytes - body.received)):
            if req.route.name == "lfs_upload":  # partial uploads count: they did cost bandwidth
                repo = req.arg("repo_type"), req.arg("repo_id")
                self.server.hub.count(*repo, "upload_bytes_received", len(chunk))
        self._abort()

    def _abort(self) -> None:
        # Log first: the client may see the reset (and a test read the log) right away.
        self._log_entry["status"] = "dropped"
        # SO_LINGER 0: closing sends a TCP reset, the client sees a broken connection.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True
        raise _Abort

    def _send(self, reply: Reply, route: Route, drop_after: int | None) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(reply.content_length))
        self.end_headers()
        if self.command == "HEAD":
            return
        hub, sent = self.server.hub, 0

        def write(chunk: bytes) -> None:
            nonlocal sent
            if drop_after is not None and sent + len(chunk) > drop_after:
                self.wfile.write(chunk[: drop_after - sent])
                self.wfile.flush()
                self._abort()
            self.wfile.write(chunk)
            sent += len(chunk)
            for key in reply.counters:
                hub.count(route.repo_type, route.repo_id, key, len(chunk))

        if reply.stream is not None:
            for chunk in reply.stream:
                write(chunk)
        elif reply.file is not None:
            with reply.file.open("rb") as f:
                f.seek(reply.start)
                left = reply.length
                while left > 0 and (chunk := f.read(min(CHUNK, left))):
                    write(chunk)
                    left -= len(chunk)
        else:
            write(reply.body)
        if sent != reply.content_length:  # never leave the client waiting for missing bytes
            raise ConnectionError(f"sent {sent} of {reply.content_length} bytes")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: Hub) -> None:
        self.hub = hub
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Errors in Hub.handle are answered with a 500 already; what lands here are broken
        # connections, which fault injection causes on purpose.
        logger.debug("connection error with %s: %r", client_address, sys.exc_info()[1])


class HubServer:
    """The Hub stand-in on a loopback port, served by a background thread.

    ``port=0`` picks a free port. ``tokens``: valid tokens (all of user ``test-user``) or a
    ``{token: user}`` mapping; ``.token`` is the first one, for convenience. ``xet=False``
    makes the token routes answer 404 and resolve announce no Xet hash: LFS only.
    """

    def __init__(
        self,
        storage: str | Path,
        tokens: Mapping[str, str] | Iterable[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        allow_anonymous_read: bool = False,
        xet: bool = True,
    ) -> None:
        self.hub = Hub(storage, tokens, lfs_threshold=lfs_threshold,
                       allow_anonymous_read=allow_anonymous_read, xet_enabled=xet)
        self.token: str = next(iter(self.hub.tokens))
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def cas_dir(self) -> Path:
        """The folder hf_xet writes xorbs and shards in (``casUrl`` ``local://...``)."""
        return self.hub.cas.root

    def start(self) -> Self:
        self._httpd = _HTTPServer(self._address, self.hub)
        self.hub.base_url = self.url
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        # Cut idle keep-alive connections too: a client pool must not reach the handler
        # threads of a stopped server (the next server may reuse the port).
        for conn in list(self._httpd.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_token(self, token: str, user: str) -> None:
        """Register another user, e.g. to check that private repos are hidden from them."""
        self.hub.tokens[token] = user

    # The test helpers; HubAdminClient has the same ones for a server in another process.
    @property
    def faults(self) -> FaultSet:
        return self.hub.faults

    def stats(self, repo_id: str, repo_type: str = "dataset") -> dict[str, int]:
        return self.hub.stats(repo_id, repo_type)

    def reset_stats(self) -> None:
        self.hub.reset_stats()

    def requests(self) -> list[dict[str, Any]]:
        return list(self.hub.request_log)

    def corrupt_file(
        self, repo_id: str, path: str, repo_type: str = "dataset", revision: str = "main"
    ) -> None:
        admin.corrupt_file(self.hub, repo_id, path, repo_type, revision)

    def remove_file(
        self, repo_id: str, path: str, repo_type: str = "dataset", branch: str = "main"
    ) -> str:
        return admin.remove_file(self.hub, repo_id, path, repo_type, branch)


class _RemoteFaults:
    def __init__(self, admin_client: HubAdminClient) -> None:
        self._admin = admin_client

    def add(self, kind: str, **options: Any) -> dict[str, Any]:
        return self._admin.call("POST", "faults", {"kind": kind, **options})

    def clear(self) -> None:
        self._admin.call("DELETE", "faults")

    def pending(self) -> list[dict[str, Any]]:
        return self._admin.call("GET", "faults")


class HubAdminClient:
    """The test helpers of ``HubServer``, for a server running in another process."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.faults = _RemoteFaults(self)

    def call(self, method: str, action: str, payload: Any = None, **query: str) -> Any:
        url = f"{self.url}/_admin/{action}" + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(payload or {}).encode() if method == "POST" else None
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait_until_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.faults.pending()
                return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stats(self, repo_id: str, repo_type: str = "dataset") -> dict[str, int]:
        return self.call("GET", "stats", repo_id=repo_id, repo_type=repo_type)

    def reset_stats(self) -> None:
        self.call("POST", "reset-stats")

    def requests(self) -> list[dict[str, Any]]:
        return self.call("GET", "requests")

    def corrupt_file(
        self, repo_id: str, path: str, repo_type: str = "dataset", revision: str = "main"
    ) -> None:
        payload = {"repo_id": repo_id, "path": path, "repo_type": repo_type, "revision": revision}
        self.call("POST", "corrupt", payload)

    def remove_file(
        self, repo_id: str, path: str, repo_type: str = "dataset", branch: str = "main"
    ) -> str:
        payload = {"repo_id": repo_id, "path": path, "repo_type": repo_type, "branch": branch}
        return self.call("POST", "remove-file", payload)["commitOid"]
