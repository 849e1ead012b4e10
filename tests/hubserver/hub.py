"""The Hub: state shared by all handler threads (store, Xet CAS, tokens, faults, counters,
request log), authentication, and dispatch through the route table."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import xet
from .faults import FaultSet
from .protocol import HubError, Reply, Request
from .routes import ROUTES
from .store import DEFAULT_USER, Repo, Store

DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024


class Hub:
    """Request handling, independent of the HTTP plumbing."""

    def __init__(
        self,
        storage: str | Path,
        tokens: Mapping[str, str] | Iterable[str],
        *,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        allow_anonymous_read: bool = False,
        xet_enabled: bool = True,
    ) -> None:
        self.store = Store(storage)
        self.tokens = (dict(tokens) if isinstance(tokens, Mapping)
                       else dict.fromkeys(tokens, DEFAULT_USER))
        if not self.tokens:
            raise ValueError("at least one token is required")
        self.lfs_threshold = lfs_threshold
        self.allow_anonymous_read = allow_anonymous_read
        self.xet_enabled = xet_enabled
        self.cas = xet.XetCas(Path(storage) / "xet-cas")
        self.signer = xet.CasSigner()
        self.bridge = xet.XetBridge(self)
        self.base_url = ""  # known once the socket is bound
        self.faults = FaultSet()
        self.request_log: list[dict[str, Any]] = []  # method, path, route, status: no headers
        self._stats: dict[tuple[str, str], Counter[str]] = {}
        self._stats_lock = threading.Lock()
        self._xet_writer: tuple[str, str] | None = None  # repo of the last write token

    @property
    def cas_http_url(self) -> str:
        return f"{self.base_url}/_xet"

    # accounting ---------------------------------------------------------------------------
    def count(self, repo_type: str | None, repo_id: str | None, key: str, n: int = 1) -> None:
        if repo_type and repo_id:
            with self._stats_lock:
                self._stats.setdefault((repo_type, repo_id), Counter())[key] += n

    def collect_xet_uploads(self, next_writer: tuple[str, str] | None = None) -> None:
        """Count xorbs and shards that reached the CAS folder for the repo of the last write
        token; then, if given, make ``next_writer`` that repo."""
        found = self.cas.scan()
        if self._xet_writer is not None:
            repo = self._xet_writer
            for _, size in found.xorbs:
                self.count(*repo, "xet_xorbs_uploaded")
                self.count(*repo, "xet_xorb_bytes_uploaded", size)
                self.count(*repo, "bytes_stored", size)
                self.count(*repo, "upload_bytes_received", size)
            for _, size in found.shards:
                self.count(*repo, "xet_shards_uploaded")
                self.count(*repo, "xet_shard_bytes_uploaded", size)
                self.count(*repo, "upload_bytes_received", size)
            for new in found.files:
                self.count(*repo, "xet_files_uploaded")
                self.count(*repo, "xet_file_bytes_uploaded", new.size)
                self.count(*repo, "files_stored")
        if next_writer is not None:
            self._xet_writer = next_writer

    def stats(self, repo_id: str, repo_type: str = "dataset") -> dict[str, int]:
        """Counters of one repo (absent keys are zero):

        * ``requests.<route>``: requests per route name (see routes.py);
        * LFS: ``lfs_objects_uploaded``, ``lfs_bytes_uploaded``, ``lfs_objects_skipped``
          (the batch said "already there");
        * Xet: ``xet_xorbs_uploaded``, ``xet_xorb_bytes_uploaded`` (new xorb files: the
          compressed chunks that reached storage), ``xet_shards_uploaded``,
          ``xet_shard_bytes_uploaded``, ``xet_files_uploaded``, ``xet_file_bytes_uploaded``
          (files new to the CAS and their sizes; deduplication saved the difference between
          these bytes and the xorb bytes);
        * either transport: ``files_stored`` (LFS objects + new Xet files), ``bytes_stored``
          (their LFS bytes + new xorb bytes: what reached storage), ``upload_bytes_received``
          (LFS PUT body bytes, partial ones too, + Xet xorb and shard bytes);
        * ``commits``, ``regular_bytes_committed``;
        * ``download_bytes_sent``: bodies of ``resolve`` replies + xorb bytes sent to Xet
          clients (``xet_xorb_bytes_sent``)."""
        self.collect_xet_uploads()
        with self._stats_lock:
            return dict(self._stats.get((repo_type, repo_id), Counter()))

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log."""
        self.collect_xet_uploads()  # what landed before the reset is not counted after it
        with self._stats_lock:
            self._stats.clear()
            self.request_log.clear()

    # auth ---------------------------------------------------------------------------------
    def user_for(self, authorization: str | None) -> str | None:
        """None for anonymous; 401 for a malformed or unknown token (the Hub's wording)."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    @staticmethod
    def require_user(user: str | None, action: str) -> str:
        if user is None:
            raise HubError(401, f"You must be authenticated to {action}")
        return user

    def readable_repo(self, req: Request) -> Repo:
        if req.user is None and not self.allow_anonymous_read:
            raise HubError(401, "You must be authenticated to access this resource")
        repo = self.store.get(req.route.repo_type or "", req.route.repo_id or "")
        if repo is None or (repo.private and repo.owner != req.user):
            # The Hub hides existence: 401 for anonymous callers, 404 for other users.
            raise HubError(401 if req.user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, req: Request) -> tuple[Repo, str]:
        user = self.require_user(req.user, "write to a repository")
        repo = self.readable_repo(req)
        if repo.owner != user:
            raise HubError(403, f"You don't have the rights to write to {repo.repo_id}")
        return repo, user

    def repo_url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.base_url}/{prefix}{repo.repo_id}"

    # dispatch -----------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        spec = ROUTES.get(req.route.name)
        if spec is None:
            raise HubError(404, "Not found")
        if spec.hub_auth:  # pre-signed upload URLs and the CAS carry their own credentials
            req.user = self.user_for(req.headers.get("Authorization"))
        if req.method not in spec.methods:
            raise HubError(405, f"Method {req.method} not allowed here")
        return spec.handler(self, req)

    def is_internal(self, req: Request) -> bool:
        """The server's own requests to its CAS (the Xet bridge): not logged, faulted or
        counted, like the Hub's internal traffic."""
        return xet.is_internal(self, req)
