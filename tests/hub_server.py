"""A local stand-in for the parts of the Hugging Face Hub HTTP API that our clients use.

This module owns a small, standard-library-only HTTP server that speaks just enough of the
Hub protocol for ``huggingface_hub`` 2.4 and ``datasets`` 5.2 to create repos, upload folders,
list and download files and load datasets (also in streaming mode). Tests point the real
clients at it with ``HF_ENDPOINT=http://127.0.0.1:PORT`` and make real HTTP calls.

Run it standalone (``--port 0`` picks a free port; the URL is printed on start)::

    python tests/hub_server.py --port 8765 --storage ./hub-storage --token hf_xxx

or in-process::

    with HubServer(storage=tmp_path, tokens=["hf_xxx"]) as server:
        ...  # server.url, server.token, server.faults, server.stats(...)

Upload protocol: LFS only, no Xet
---------------------------------
``huggingface_hub`` 2.4 uses Xet storage whenever the ``hf_xet`` package is importable; there
is no negotiation with the server: ``utils/_runtime.py:is_xet_available()`` only looks at
``constants.HF_HUB_DISABLE_XET`` and at the package, and both ``_commit_api._upload_files``
and ``HfApi.upload_folder`` (its Xet "pipelined" upload) branch on it. This server does not
speak Xet, so clients MUST run with ``HF_HUB_DISABLE_XET=1``. ``upload_folder`` then makes a
single ``create_commit``, which calls:

1. ``POST /api/validate-yaml`` when README.md is uploaded (twice: once while listing the
   folder, once in create_commit),
2. ``POST /api/{type}s/{repo}/preupload/{rev}``: regular vs lfs upload mode per file, plus
   the ``oid`` of the remote file, so that unchanged files are dropped from the commit,
3. ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` for every LFS file (unchanged too),
4. ``PUT`` to the ``upload`` href of each object that got ``actions`` (sent without auth
   header: on the Hub it is a pre-signed storage URL, here an HMAC-signed one), then
   ``POST`` to its ``verify`` href,
5. one NDJSON ``POST /api/{type}s/{repo}/commit/{rev}``; when nothing changed, no commit but
   ``GET /api/{type}s/{repo}/revision/{rev}``.

Endpoints
---------
``{type}s`` is models, datasets or spaces; ``{prefix}`` is "" for models, else "datasets/"...

``GET /api/whoami-v2``, ``POST /api/repos/create``, ``DELETE /api/repos/delete``,
``POST /api/validate-yaml``, ``GET /api/{type}s/{repo}[/revision/{rev}]`` (``?blobs=true``),
``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` (``?recursive=&expand=``),
``POST /api/{type}s/{repo}/paths-info/{rev}``, ``POST .../preupload/{rev}``,
``POST .../commit/{rev}`` (``?create_pr=1``), ``GET .../commits/{rev}``,
``GET .../refs`` (``?include_prs=1``), ``POST|DELETE .../branch/{branch}``,
``POST /{prefix}{repo}.git/info/lfs/objects/batch`` and ``.../verify``,
``PUT /_lfs/upload/{oid}`` (signed), ``GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}``
(with Range). Test-only: ``GET|POST|DELETE /_admin/faults``, ``GET /_admin/stats``,
``POST /_admin/reset-stats``, ``GET /_admin/requests``, ``POST /_admin/corrupt``,
``POST /_admin/remove-file``. Anything else answers 404, which the clients tolerate where
they probe optional files (``datasets`` asks for ``{name}.py``, ``.huggingface.yaml``...).

Branches and pull requests
--------------------------
Every ``{rev}`` that is read (repo info, tree, paths-info, commits, preupload, resolve) is a
branch name, a pull request's ``refs/pr/N`` or a commit id (full, or >= 7 hex chars).
The clients quote revisions with ``safe=""``, so ``refs/pr/1`` arrives as ``refs%2Fpr%2F1``;
an unquoted ``refs/pr/1`` in a path is not recognised.

* ``create_branch`` posts ``{"startingPoint": rev}`` (or ``{}``: main's head) to
  ``.../branch/{branch}``; an existing name answers 409, which ``exist_ok=True`` swallows.
  ``refs/...`` and other invalid names answer 400. ``delete_branch`` sends ``DELETE`` there
  (main: 403; unknown: 404 RevisionNotFound).
* ``create_commit(revision=branch)`` commits to that branch; an open PR's ``refs/pr/N`` can
  be committed to as well, as on the Hub. Anything else answers 404 RevisionNotFound.
* ``create_commit(create_pr=True)`` adds ``?create_pr=1`` to preupload and commit. The commit
  opens PR number N (1, 2... per repo) against the branch in ``{rev}``, applies the operations
  on the branch head (or on ``parentCommit``) and moves ``refs/pr/N`` to the result; the
  branch is untouched. The reply's ``pullRequestUrl`` (``.../discussions/N``) is what
  ``CommitInfo`` parses into ``pr_url``, ``pr_revision`` ("refs/pr/N") and ``pr_num``.
  ``{rev}`` must be a branch (else 404 RevisionNotFound).
* ``list_repo_refs`` sends ``?include_prs=1`` for ``include_pull_requests=True``; PRs are
  listed as ``{"name": "refs/pr/N", "ref": "refs/pr/N", "targetCommit": sha}``.

What follows the Hub and what is simplified
-------------------------------------------
As far as the clients can tell (read in their source, checked by running them) this follows
the Hub: URL layout; JSON shapes; errors as JSON ``{"error": ...}`` with ``X-Error-Message``
and ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``); 401 for a
bad token; 404 for someone else's private repo; 409 on re-creation; LFS batch answers without
``actions`` for stored objects; preupload ``oid`` (sha256 for LFS files, git blob sha1 for
regular ones); ``ETag``, ``X-Repo-Commit``, ``X-Linked-Etag``/``X-Linked-Size`` (LFS) and
``Accept-Ranges`` on resolve; 206/416 for ranges; a first commit holding ``.gitattributes``.

Simplified, on purpose:

* Permissions: a valid token maps to a user name. Any user may create repos in any namespace
  (orgs are open); a repo is readable by everyone if public, only by its creator if private,
  and writable only by its creator. By default *every* request needs a valid token, whereas
  the Hub serves public repos anonymously (``allow_anonymous_read=True`` does that). Upload
  hrefs are the exception: like the Hub's pre-signed URLs they carry their own signature.
* Resolve serves the bytes itself (200/206) where the Hub redirects LFS files to a CDN.
* The object store is global and content-addressed by sha256: an LFS object uploaded for one
  repo is "already present" for all. Regular files live in the same store.
* Upload mode: LFS if size >= ``lfs_threshold`` (10 MiB, near the Hub's 10 MB), the name has a
  data suffix (parquet, arrow, nii.gz...) or the 512-byte sample has a NUL byte. The
  ``.gitattributes`` file is not parsed, ``.gitignore`` is ignored (``shouldIgnore`` is always
  false) and README metadata is not schema-validated.
* Commit ids are random sha1s, not git objects. Branches hold no protection rules; a deleted
  branch's commits stay reachable by id.
* Pull requests are refs only: no discussions API (the ``pullRequestUrl`` is not served),
  no comments, status changes or merging; every PR stays open and accepts commits. Their
  numbers do not count discussions, as the Hub's do.
* No tags, ``refs/convert/...``, gating, Xet, multipart LFS, pagination, or dataset-viewer
  (``datasets-server``) API.

Test helpers (not part of the Hub): fault injection (``server.faults``), per-repo counters
(``server.stats(...)``), a request log, server-side corruption and removal of files.
``HubAdminClient`` offers the same methods for a server running in another process. Tokens
are never logged nor echoed back.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

logger = logging.getLogger("hub_server")

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_USER = "test-user"
DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024
# Sent to LFS whatever their size: mostly the Hub's default .gitattributes, plus NIfTI.
LFS_SUFFIXES = (
    ".parquet", ".arrow", ".nii", ".nii.gz", ".gz", ".zip", ".tar", ".zst", ".bin", ".h5",
    ".npy", ".npz", ".pt", ".pkl", ".safetensors", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
)  # fmt: skip
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
CHUNK = 64 * 1024
UPLOAD_URL_TTL = 3600
MAX_BUFFERED_BODY = 1024**3  # JSON/NDJSON bodies are read in memory (Hub commits cap at 1 GB)
ROUTE_METHODS = {
    "whoami": {"GET"}, "validate_yaml": {"POST"}, "repo_create": {"POST"},
    "repo_delete": {"DELETE"}, "repo_info": {"GET"}, "refs": {"GET"}, "commits": {"GET"},
    "branch": {"POST", "DELETE"},
    "tree": {"GET"}, "paths_info": {"POST"}, "preupload": {"POST"}, "commit": {"POST"},
    "lfs_batch": {"POST"}, "lfs_verify": {"POST"}, "lfs_upload": {"PUT"},
    "resolve": {"GET", "HEAD"}, "admin": {"GET", "POST", "DELETE"},
}  # fmt: skip

FileEntry = dict[str, Any]  # {"sha256", "size", "lfs", "oid"[, "pointer_size"]}
Commit = dict[str, Any]  # {"id", "parents", "title", "message", "date", "authors", "files"}


def now_iso() -> str:
    """The Hub's timestamp format, which huggingface_hub's parse_datetime expects."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, which the Hub reports as a file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


class HubError(Exception):
    """An error answered as the Hub does: JSON ``{"error": msg}`` plus X-Error-* headers."""

    def __init__(
        self, status: int, message: str, code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}


# --------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------

FAULT_KINDS = ("status", "drop", "delay")


@dataclass
class Fault:
    """A fault applied to the next ``times`` requests matching ``method`` and ``path``.

    ``path`` is a regex searched in the URL path (no query string); ``method=None`` matches
    any method; ``times=None`` applies to every matching request until cleared.

    * "status": answer ``status`` (and ``Retry-After: retry_after`` if set), skip handling.
    * "drop": reset the connection after ``after_bytes`` bytes of the request body when the
      request has one (an upload), else of the response body (a download). With
      ``on_response=True``, always of the response body: the request was handled (a commit
      landed) but the client never gets the answer, as when a reply is lost in transit.
    * "delay": sleep ``seconds`` first; combines with the other kinds.
    """

    kind: str
    path: str = ".*"
    method: str | None = None
    times: int | None = 1
    status: int = 503
    retry_after: int | None = None
    after_bytes: int = 0
    on_response: bool = False
    seconds: float = 0.0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        re.compile(self.path)
        self.method = self.method.upper() if self.method else None

    def matches(self, method: str, path: str) -> bool:
        return self.method in (None, method) and re.search(self.path, path) is not None


class FaultSet:
    """Thread-safe list of pending faults."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, kind: str, **options: Any) -> Fault:
        """``options``: path, method, times, status, retry_after, after_bytes, on_response,
        seconds."""
        fault = Fault(kind, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, method: str, path: str) -> list[Fault]:
        """Consume one use of every fault matching this request."""
        taken = []
        with self._lock:
            for fault in list(self._faults):
                if fault.matches(method, path):
                    fault.hits += 1
                    taken.append(fault)
                    if fault.times is not None and fault.hits >= fault.times:
                        self._faults.remove(fault)
        return taken


# --------------------------------------------------------------------------------------------
# Storage: content-addressed objects + one JSON document per repo (refs, commits and PRs)
# --------------------------------------------------------------------------------------------


PR_REF = re.compile(r"refs/pr/([1-9][0-9]*)")


def valid_branch_name(name: str) -> bool:
    """A subset of git's ref-name rules; ``refs/...`` names are the Hub's own (PRs, converts)."""
    return (re.fullmatch(r"[A-Za-z0-9._/-]+", name) is not None
            and not name.startswith(("refs/", "/", "-", "."))
            and not name.endswith(("/", ".", ".lock"))
            and ".." not in name and "//" not in name and "/." not in name)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    owner: str
    created_at: str
    # Heads by ref name: branches ("main") and pull requests ("refs/pr/1"), which branch
    # names cannot clash with (valid_branch_name refuses "refs/...").
    refs: dict[str, str] = field(default_factory=dict)
    # Each commit keeps a full snapshot of the files (path -> FileEntry): tiny, and simple.
    commits: dict[str, Commit] = field(default_factory=dict)
    # Pull requests by number (a string: JSON keys): {"num", "target", "title", "author",
    # "createdAt", "status"}. Their heads live in ``refs`` as "refs/pr/{num}".
    pulls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def head(self, ref: str = "main") -> Commit:
        return self.commits[self.refs[ref]]

    def branches(self) -> dict[str, str]:
        return {name: sha for name, sha in self.refs.items() if not name.startswith("refs/")}


class Store:
    """Everything on disk under ``root``: reloaded on start, so it survives restarts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.repos_dir = self.root / "repos"
        self.tmp = self.root / "tmp"
        for d in (self.objects, self.repos_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()  # guards repos and their refs/commits
        self.repos: dict[tuple[str, str], Repo] = {}
        for path in self.repos_dir.glob("*/*/*.json"):
            repo = Repo(**json.loads(path.read_text()))
            self.repos[(repo.repo_type, repo.repo_id)] = repo

    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def has_object(self, sha256: str, size: int | None = None) -> bool:
        path = self.object_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def adopt(self, tmp_file: Path, sha256: str) -> None:
        target = self.object_path(sha256)
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp_file, target)  # atomic: readers never see a partial object

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_object(sha, len(data)):
            tmp = self.tmp / f"{sha}.{secrets.token_hex(4)}"
            tmp.write_bytes(data)
            self.adopt(tmp, sha)
        return sha

    def regular_entry(self, data: bytes) -> FileEntry:
        return {"sha256": self.put_bytes(data), "size": len(data), "lfs": False,
                "oid": git_blob_oid(data)}

    @staticmethod
    def lfs_entry(oid: str, size: int) -> FileEntry:
        pointer = lfs_pointer(oid, size)
        return {"sha256": oid, "size": size, "lfs": True, "oid": git_blob_oid(pointer),
                "pointer_size": len(pointer)}

    def get(self, repo_type: str, repo_id: str) -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def save(self, repo: Repo) -> None:
        path = self.repos_dir / repo.repo_type / f"{repo.repo_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(asdict(repo)))
        os.replace(tmp, path)

    def create(self, repo_type: str, repo_id: str, private: bool, owner: str) -> Repo:
        repo = Repo(repo_type, repo_id, private, owner, now_iso())
        # Like the Hub, a new repo starts with a system commit holding .gitattributes.
        files = {".gitattributes": self.regular_entry(GITATTRIBUTES.encode())}
        self.repos[(repo_type, repo_id)] = repo
        self.commit(repo, "main", files, "initial commit", "", owner)
        return repo

    def delete(self, repo: Repo) -> None:
        self.repos.pop((repo.repo_type, repo.repo_id), None)
        (self.repos_dir / repo.repo_type / f"{repo.repo_id}.json").unlink(missing_ok=True)

    def commit(
        self, repo: Repo, ref: str, files: dict[str, FileEntry], title: str, message: str,
        user: str, parent: str | None = None,
    ) -> str:
        """A new commit on ``ref`` (a branch or "refs/pr/N"), child of ``parent`` (default:
        the ref's head), saved with the ref moved to it."""
        parent = parent or repo.refs.get(ref)
        seed = json.dumps([parent, sorted(files), title, time.time_ns(), secrets.token_hex(4)])
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[sha] = {
            "id": sha, "parents": [parent] if parent else [], "title": title,
            "message": message, "date": now_iso(), "authors": [user], "files": files,
        }
        repo.refs[ref] = sha
        self.save(repo)
        return sha

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """Branch name, "refs/pr/N" or (abbreviated, >= 7 chars) commit id -> commit."""
        if revision in repo.refs:
            return repo.commits[repo.refs[revision]]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [c for sha, c in repo.commits.items() if sha.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    @staticmethod
    def history(repo: Repo, commit: Commit) -> Iterator[Commit]:
        while True:
            yield commit
            if not commit["parents"]:
                return
            commit = repo.commits[commit["parents"][0]]


def all_dirs(files: Iterable[str]) -> set[str]:
    """Every folder implied by a set of file paths."""
    dirs = set()
    for path in files:
        parts = path.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return dirs


def dir_oid(files: Mapping[str, FileEntry], folder: str) -> str:
    """A stable id for a folder's content (the Hub reports its git tree oid)."""
    listing = sorted(f"{p}:{e['oid']}" for p, e in files.items() if p.startswith(folder + "/"))
    return hashlib.sha1("\n".join(listing).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Requests and replies
# --------------------------------------------------------------------------------------------


@dataclass
class Route:
    name: str
    repo_type: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    path: str = ""
    extra: str = ""


def parse_route(raw_path: str) -> Route:
    """Map a raw (still percent-encoded) URL path to a route. Revisions arrive quoted with
    ``safe=""`` (``refs%2Fconvert%2Fparquet``): split first, then unquote each segment."""
    seg = [unquote(s) for s in raw_path.rstrip("/").split("/")[1:]]
    if seg[:1] == ["_admin"]:
        return Route("admin", extra="/".join(seg[1:]))
    if seg[:2] == ["_lfs", "upload"] and len(seg) == 3:
        return Route("lfs_upload", extra=seg[2])
    if seg[:1] == ["api"]:
        rest = seg[1:]
        if rest in (["whoami-v2"], ["validate-yaml"]):
            return Route(rest[0].replace("-v2", "").replace("-", "_"))
        if rest[:1] == ["repos"] and len(rest) == 2:
            return Route(f"repo_{rest[1]}")
        if len(rest) < 3 or rest[0] not in REPO_TYPES:
            return Route("unknown")
        repo_type, repo_id = REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}"
        action, args = rest[3:4], rest[4:]
        if not action:
            return Route("repo_info", repo_type, repo_id)
        if action == ["revision"] and len(args) == 1:
            return Route("repo_info", repo_type, repo_id, args[0])
        if action == ["tree"] and args:
            return Route("tree", repo_type, repo_id, args[0], "/".join(args[1:]))
        if action[0] in ("paths-info", "preupload", "commit", "commits") and len(args) == 1:
            return Route(action[0].replace("-", "_"), repo_type, repo_id, args[0])
        if action == ["refs"] and not args:
            return Route("refs", repo_type, repo_id)
        if action == ["branch"] and len(args) == 1:
            return Route("branch", repo_type, repo_id, args[0])
        return Route("unknown")
    # /{prefix}{ns}/{name}.git/info/lfs/objects/{batch,verify} and
    # /{prefix}{ns}/{name}/resolve/{rev}/{path}: models have no prefix.
    repo_type = "model"
    if seg[:1] in (["datasets"], ["spaces"]):
        repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
    if (len(seg) == 6 and seg[1].endswith(".git") and seg[2:5] == ["info", "lfs", "objects"]
            and seg[5] in ("batch", "verify")):
        return Route(f"lfs_{seg[5]}", repo_type, f"{seg[0]}/{seg[1][:-4]}")
    if len(seg) >= 5 and seg[2] == "resolve":
        return Route("resolve", repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
    return Route("unknown")


class _Body:
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


@dataclass
class Request:
    method: str
    route: Route
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage
    body: _Body
    user: str | None = None  # authenticated user name, None for anonymous

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def flag(self, name: str) -> bool:
        return self.arg(name).lower() in ("1", "true")

    def json(self) -> Any:
        return json.loads(self.body.read_all() or b"{}")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # stream ``length`` bytes of this file from ``start`` instead
    start: int = 0
    length: int = 0


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/json",
                                                     **(headers or {})})


# --------------------------------------------------------------------------------------------
# The Hub logic
# --------------------------------------------------------------------------------------------


class Hub:
    """Request handling, independent of the HTTP plumbing; shared by all handler threads."""

    def __init__(
        self,
        storage: str | Path,
        tokens: Mapping[str, str] | Iterable[str],
        *,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        allow_anonymous_read: bool = False,
    ) -> None:
        self.store = Store(storage)
        self.tokens = (dict(tokens) if isinstance(tokens, Mapping)
                       else dict.fromkeys(tokens, DEFAULT_USER))
        if not self.tokens:
            raise ValueError("at least one token is required")
        self.lfs_threshold = lfs_threshold
        self.allow_anonymous_read = allow_anonymous_read
        self.base_url = ""  # known once the socket is bound
        self.faults = FaultSet()
        self.request_log: list[dict[str, Any]] = []  # method, path, route, status: no headers
        self._secret = secrets.token_bytes(32)  # signs upload hrefs (valid for this process)
        self._stats: dict[tuple[str, str], Counter[str]] = {}
        self._stats_lock = threading.Lock()

    # accounting ---------------------------------------------------------------------------
    def count(self, repo_type: str | None, repo_id: str | None, key: str, n: int = 1) -> None:
        if repo_type and repo_id:
            with self._stats_lock:
                self._stats.setdefault((repo_type, repo_id), Counter())[key] += n

    def stats(self, repo_id: str, repo_type: str = "dataset") -> dict[str, int]:
        """Counters of one repo: ``requests.<route>``, ``lfs_objects_uploaded``,
        ``lfs_bytes_uploaded``, ``upload_bytes_received`` (all PUT body bytes, partial ones
        too), ``lfs_objects_skipped`` (batch said "already there"), ``commits``,
        ``regular_bytes_committed``, ``download_bytes_sent``. Absent keys are zero."""
        with self._stats_lock:
            return dict(self._stats.get((repo_type, repo_id), Counter()))

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log."""
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

    # dispatch -----------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        if req.route.name != "lfs_upload":  # upload hrefs are pre-signed, like the Hub's
            req.user = self.user_for(req.headers.get("Authorization"))
        if req.route.name not in ROUTE_METHODS:
            raise HubError(404, "Not found")
        if req.method not in ROUTE_METHODS[req.route.name]:
            raise HubError(405, f"Method {req.method} not allowed here")
        return getattr(self, f"do_{req.route.name}")(req)

    def do_whoami(self, req: Request) -> Reply:
        user = self.require_user(req.user, "call whoami")
        token_info = {"displayName": "test", "role": "write"}
        return json_reply({
            "type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user,
            "fullname": user, "email": None, "emailVerified": False, "isPro": False, "orgs": [],
            "auth": {"type": "access_token", "accessToken": token_info},
        })

    def do_validate_yaml(self, req: Request) -> Reply:
        content = req.json().get("content", "")
        # Only checks that a front-matter block is closed; the Hub validates the metadata.
        if content.startswith("---") and "\n---" not in content[3:]:
            errors = [{"message": "Unclosed YAML front matter"}]
            return json_reply({"errors": errors, "warnings": []}, 400)
        return json_reply({"errors": [], "warnings": []})

    @staticmethod
    def _repo_from_payload(payload: dict[str, Any], user: str) -> tuple[str, str]:
        repo_type = payload.get("type") or "model"
        name, namespace = payload.get("name") or "", payload.get("organization") or user
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        if not re.fullmatch(r"[\w.-]+", namespace) or not re.fullmatch(r"[\w.-]+", name):
            raise HubError(400, f"Invalid repo name {namespace}/{name}")
        return repo_type, f"{namespace}/{name}"

    def do_repo_create(self, req: Request) -> Reply:
        user = self.require_user(req.user, "create a repository")
        payload = req.json()
        repo_type, repo_id = self._repo_from_payload(payload, user)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = f"{self.base_url}/{URL_PREFIX[repo_type]}{repo_id}"
        with self.store.lock:
            if self.store.get(repo_type, repo_id) is not None:
                # huggingface_hub's create_repo(exist_ok=True) swallows exactly this 409.
                error = f"You already created this {repo_type} repo"
                return json_reply({"error": error, "url": url}, 409)
            self.store.create(repo_type, repo_id, private, user)
        return json_reply({"url": url, "name": repo_id, "id": repo_id})

    def do_repo_delete(self, req: Request) -> Reply:
        user = self.require_user(req.user, "delete a repository")
        req.route = Route("repo_delete", *self._repo_from_payload(req.json(), user))
        repo, _ = self.writable_repo(req)
        with self.store.lock:
            self.store.delete(repo)
        return Reply()

    def do_repo_info(self, req: Request) -> Reply:
        repo = self.readable_repo(req)
        with self.store.lock:
            commit = self.store.resolve(repo, req.route.revision or "main")
        siblings = []
        for path, e in sorted(commit["files"].items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if req.flag("blobs"):  # repo_info(files_metadata=True)
                sibling.update(size=e["size"], blobId=e["oid"])
                if e["lfs"]:
                    sibling["lfs"] = {"size": e["size"], "sha256": e["sha256"],
                                      "pointerSize": e["pointer_size"]}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit["id"],
            "createdAt": repo.created_at, "lastModified": commit["date"],
            "private": repo.private, "gated": False, "disabled": False, "downloads": 0,
            "likes": 0, "tags": [], "siblings": siblings,
            "usedStorage": sum(e["size"] for e in commit["files"].values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        return json_reply(info)

    def do_refs(self, req: Request) -> Reply:
        repo = self.readable_repo(req)
        with self.store.lock:
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                        for b, sha in repo.branches().items()]
            out: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
            if req.flag("include_prs"):  # list_repo_refs(include_pull_requests=True)
                out["pullRequests"] = [
                    {"name": ref, "ref": ref, "targetCommit": repo.refs[ref]}
                    for ref in (f"refs/pr/{n}" for n in sorted(repo.pulls, key=int))]
        return json_reply(out)

    def do_branch(self, req: Request) -> Reply:
        repo, _ = self.writable_repo(req)
        name = req.route.revision or ""
        if req.method == "DELETE":
            with self.store.lock:
                if name not in repo.branches():
                    raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                if name == "main":
                    raise HubError(403, "The default branch cannot be deleted")
                del repo.refs[name]  # its commits stay reachable by id, as in git until gc
                self.store.save(repo)
            return Reply()
        payload = req.json()  # create_branch always posts a JSON object, maybe empty
        if not valid_branch_name(name):
            raise HubError(400, f"Invalid reference for a branch: {name}")
        with self.store.lock:
            start = self.store.resolve(repo, str(payload.get("startingPoint") or "main"))
            if name in repo.refs:
                # create_branch(exist_ok=True) swallows exactly this 409.
                raise HubError(409, f"Reference already exists: refs/heads/{name}")
            repo.refs[name] = start["id"]
            self.store.save(repo)
        return Reply()

    def do_commits(self, req: Request) -> Reply:
        repo = self.readable_repo(req)
        with self.store.lock:
            head = self.store.resolve(repo, req.route.revision or "main")
            commits = list(self.store.history(repo, head))
        return json_reply([
            {"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
             "authors": [{"user": a, "avatar": None} for a in c["authors"]]}
            for c in commits
        ])

    # tree / paths-info --------------------------------------------------------------------
    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> dict[str, str]:
        """The oldest commit, walking back from ``commit``, since which ``path`` is unchanged."""

        def state(c: Commit) -> Any:
            files = c["files"]
            if path in files:
                return files[path]["oid"]
            return sorted((p, e["oid"]) for p, e in files.items() if p.startswith(path + "/"))

        found, current = commit, state(commit)
        for older in self.store.history(repo, commit):
            if state(older) != current:
                break
            found = older
        return {"id": found["id"], "title": found["title"], "date": found["date"]}

    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        files = commit["files"]
        if path in files:
            e = files[path]
            out: dict[str, Any] = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
            if e["lfs"]:
                out["lfs"] = {"oid": e["sha256"], "size": e["size"],
                              "pointerSize": e["pointer_size"]}
        else:
            out = {"type": "directory", "oid": dir_oid(files, path), "size": 0, "path": path}
        if expand:
            out["lastCommit"] = self._last_commit(repo, commit, path)
        return out

    def do_tree(self, req: Request) -> Reply:
        repo, expand = self.readable_repo(req), req.flag("expand")
        with self.store.lock:
            commit = self.store.resolve(repo, req.route.revision or "main")
            files, folder = commit["files"], req.route.path.strip("/")
            dirs = all_dirs(files)
            if folder in files:  # listing a file returns the file itself
                return json_reply([self._entry(repo, commit, folder, expand)])
            if folder and folder not in dirs:
                raise HubError(404, f"{folder} does not exist", "EntryNotFound")
            prefix = folder + "/" if folder else ""
            below = [p for p in dirs | files.keys() if p.startswith(prefix)]
            if not req.flag("recursive"):
                below = [p for p in below if "/" not in p[len(prefix):]]
            below.sort(key=lambda p: (p not in dirs, p))  # folders first, like the Hub
            # Everything in one page: the client only paginates when a Link header says so.
            return json_reply([self._entry(repo, commit, p, expand) for p in below])

    def do_paths_info(self, req: Request) -> Reply:
        repo = self.readable_repo(req)
        raw = req.body.read_all()
        if "json" in req.headers.get("Content-Type", ""):
            payload = json.loads(raw or b"{}")
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:  # huggingface_hub posts a form: paths=a&paths=b&expand=false
            form = parse_qs(raw.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
        with self.store.lock:
            commit = self.store.resolve(repo, req.route.revision or "main")
            known = commit["files"].keys() | all_dirs(commit["files"])
            wanted = [p.strip("/") for p in paths]  # missing paths are silently omitted
            return json_reply([self._entry(repo, commit, p, expand) for p in wanted if p in known])

    # upload -------------------------------------------------------------------------------
    @staticmethod
    def _writable_ref(repo: Repo, revision: str | None, create_pr: bool = False) -> str:
        """The ref a commit goes to: a branch, or an open pull request's "refs/pr/N"; with
        ``create_pr`` the branch the new pull request targets (a PR cannot target a PR)."""
        ref = revision or "main"
        pr = PR_REF.fullmatch(ref)
        if ref in repo.branches() or (pr and not create_pr and pr[1] in repo.pulls
                                       and repo.pulls[pr[1]]["status"] == "open"):
            return ref
        raise HubError(404, f"Invalid rev id: {ref}", "RevisionNotFound")

    def upload_mode(self, path: str, size: int, sample: bytes) -> str:
        is_data = path.lower().endswith(LFS_SUFFIXES) or b"\0" in sample
        return "lfs" if size >= self.lfs_threshold or is_data else "regular"

    def do_preupload(self, req: Request) -> Reply:
        repo, _ = self.writable_repo(req)
        payload = req.json()
        with self.store.lock:
            # Only reports modes and current oids: any revision reads; commit checks the ref.
            head = self.store.resolve(repo, req.route.revision or "main")
        out = []
        for f in payload.get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            remote = head["files"].get(f["path"])
            # The oid flavour of huggingface_hub's CommitOperationAdd._local_oid: on a match,
            # the client drops the file from the commit.
            oid = None if remote is None else remote["sha256"] if remote["lfs"] else remote["oid"]
            mode = self.upload_mode(f["path"], int(f["size"]), sample)
            out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return json_reply({"files": out, "commitOid": head["id"]})

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base_url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, ":".join(parts).encode(), hashlib.sha256).hexdigest()

    def do_lfs_batch(self, req: Request) -> Reply:
        repo, _ = self.writable_repo(req)
        payload = req.json()
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' operation is supported")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "Only the 'basic' transfer is supported")
        repo_url = self.repo_url(repo)
        objects = []
        for obj in payload.get("objects", []):
            oid, size = str(obj.get("oid", "")), obj.get("size")
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "Invalid oid or size"}})
            elif self.store.has_object(oid, size):
                self.count(repo.repo_type, repo.repo_id, "lfs_objects_skipped")
                objects.append({"oid": oid, "size": size})  # no "actions": client skips it
            else:
                expires = str(int(time.time()) + UPLOAD_URL_TTL)
                signed = {"size": size, "repo_type": repo.repo_type, "repo_id": repo.repo_id,
                          "expires": expires,
                          "sig": self._sign(oid, str(size), repo.repo_type, repo.repo_id, expires)}
                # No "chunk_size" in a "header": that would switch the client to multipart.
                actions = {
                    "upload": {"href": f"{self.base_url}/_lfs/upload/{oid}?{urlencode(signed)}",
                               "expires_in": UPLOAD_URL_TTL},
                    "verify": {"href": f"{repo_url}.git/info/lfs/objects/verify", "header": {}},
                }
                objects.append({"oid": oid, "size": size, "authenticated": True,
                                "actions": actions})
        return json_reply({"transfer": "basic", "objects": objects},
                          headers={"Content-Type": "application/vnd.git-lfs+json"})

    def do_lfs_upload(self, req: Request) -> Reply:
        oid, repo_type, repo_id = req.route.extra, req.arg("repo_type"), req.arg("repo_id")
        size, expires = req.arg("size"), req.arg("expires")
        expected = self._sign(oid, size, repo_type, repo_id, expires)
        if (not hmac.compare_digest(req.arg("sig"), expected) or not expires.isdigit()
                or int(expires) < time.time()):
            raise HubError(403, "Invalid or expired upload signature")
        tmp = self.store.tmp / f"{oid}.{secrets.token_hex(4)}.part"
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as f:
                while chunk := req.body.read():
                    digest.update(chunk)
                    f.write(chunk)
                    self.count(repo_type, repo_id, "upload_bytes_received", len(chunk))
            if req.body.received != int(size):
                raise HubError(400, f"Expected {size} bytes, received {req.body.received}")
            if digest.hexdigest() != oid:
                raise HubError(400, "The sha256 of the uploaded content does not match the oid")
            with self.store.lock:
                if not self.store.has_object(oid, int(size)):
                    self.store.adopt(tmp, oid)
        finally:
            tmp.unlink(missing_ok=True)
        self.count(repo_type, repo_id, "lfs_objects_uploaded")
        self.count(repo_type, repo_id, "lfs_bytes_uploaded", int(size))
        return Reply(headers={"ETag": f'"{oid}"'})

    def do_lfs_verify(self, req: Request) -> Reply:
        self.writable_repo(req)
        payload = req.json()
        if not self.store.has_object(str(payload.get("oid")), payload.get("size")):
            raise HubError(404, "Object not found or size mismatch")
        return json_reply({"success": True})

    def _apply(self, files: dict[str, FileEntry], key: str, value: dict[str, Any]) -> int:
        """Apply one commit operation to ``files``; returns the regular bytes it added."""
        path = str(value.get("path", "")).strip("/")
        if not path or ".." in path.split("/"):
            raise HubError(400, f"Invalid path {value.get('path')!r}")
        if key == "file":
            content = value["content"]
            is_b64 = value.get("encoding") == "base64"
            data = base64.b64decode(content) if is_b64 else content.encode()
            if len(data) >= self.lfs_threshold:
                raise HubError(400, f"{path} is over {self.lfs_threshold} bytes: use LFS")
            files[path] = self.store.regular_entry(data)
            return len(data)
        if key == "lfsFile":
            oid = str(value.get("oid", ""))
            if not self.store.has_object(oid):
                raise HubError(400, f"LFS object {oid} for {path} was not uploaded")
            size = self.store.object_path(oid).stat().st_size
            if value.get("size") not in (None, size):
                raise HubError(400, f"LFS object {oid} has size {size}, not {value['size']}")
            files[path] = self.store.lfs_entry(oid, size)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                # huggingface_hub looks for this wording to hint at deleting folders instead.
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif key == "deletedFolder":
            doomed = [p for p in files if p.startswith(path + "/")]
            if not doomed:
                raise HubError(404, f"No file under this folder: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise HubError(400, f"Unsupported commit operation {key!r}")
        return 0

    def do_commit(self, req: Request) -> Reply:
        """A commit on a branch or an open PR; with ``?create_pr=1`` (how huggingface_hub
        says it) a new PR against the branch, based on its head or on ``parentCommit``."""
        repo, user = self.writable_repo(req)
        create_pr = req.flag("create_pr")
        lines = [json.loads(line) for line in req.body.read_all().splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item.get("key") == "header"), {})
        if not header.get("summary"):
            raise HubError(400, "Missing commit header with a summary")
        wanted_parent = header.get("parentCommit")
        with self.store.lock:
            ref = self._writable_ref(repo, req.route.revision, create_pr)
            parent = repo.refs[ref]
            if create_pr and wanted_parent:  # the PR starts from that commit
                parent = self.store.resolve(repo, wanted_parent)["id"]
            elif wanted_parent and not parent.startswith(wanted_parent):
                raise HubError(412, "A commit has happened since the given parent commit")
            files = dict(repo.commits[parent]["files"])
            regular_bytes = sum(self._apply(files, item.get("key"), item.get("value", {}))
                                for item in lines if item.get("key") != "header")
            if clash := all_dirs(files) & files.keys():
                raise HubError(400, f"Paths used both as file and folder: {sorted(clash)}")
            pr_url = None
            if create_pr:
                # Numbered per repo from 1 (on the Hub, PRs share numbers with discussions).
                num = str(max(map(int, repo.pulls), default=0) + 1)
                repo.pulls[num] = {"num": int(num), "target": ref, "title": header["summary"],
                                   "author": user, "createdAt": now_iso(), "status": "open"}
                ref = f"refs/pr/{num}"
                pr_url = f"{self.repo_url(repo)}/discussions/{num}"
            # One save holds the new PR (if any), the commit and the moved ref.
            sha = self.store.commit(repo, ref, files, header["summary"],
                                    header.get("description", ""), user, parent)
        self.count(repo.repo_type, repo.repo_id, "commits")
        self.count(repo.repo_type, repo.repo_id, "regular_bytes_committed", regular_bytes)
        # CommitInfo derives pr_revision ("refs/pr/N") and pr_num from pullRequestUrl.
        return json_reply({"success": True, "commitOid": sha,
                           "commitUrl": f"{self.repo_url(repo)}/commit/{sha}",
                           "hookOutput": "", "pullRequestUrl": pr_url})

    # download -----------------------------------------------------------------------------
    def do_resolve(self, req: Request) -> Reply:
        repo = self.readable_repo(req)
        with self.store.lock:
            commit = self.store.resolve(repo, req.route.revision or "main")
        # X-Repo-Commit on a 404 too: hf_hub_download caches the non-existence per commit.
        common = {"X-Repo-Commit": commit["id"]}
        entry = commit["files"].get(req.route.path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", common)
        path = self.store.object_path(entry["sha256"])
        if not path.is_file():
            raise HubError(500, f"Stored content of {req.route.path} is missing", headers=common)
        total = path.stat().st_size
        headers = {
            **common,
            "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{quote(req.route.path.split("/")[-1])}"',
        }
        if entry["lfs"]:
            # Set on the Hub's CDN redirect; the client prefers them to ETag/Content-Length.
            headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Size"] = str(entry["size"])
        start, end, status = 0, total - 1, 200
        if rng := req.headers.get("Range"):
            unsatisfiable = HubError(416, "Range not satisfiable",
                                     headers={**common, "Content-Range": f"bytes */{total}"})
            m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", rng)
            if not m or not (m[1] or m[2]):
                raise unsatisfiable
            if m[1]:
                start, end = int(m[1]), min(int(m[2]) if m[2] else total - 1, total - 1)
            else:  # suffix range: the last N bytes
                start = max(total - int(m[2]), 0)
            if start >= total or start > end:
                raise unsatisfiable
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return Reply(status, headers=headers, file=path, start=start, length=end - start + 1)

    # admin (test-only) --------------------------------------------------------------------
    def _entry_of(self, repo_id: str, path: str, repo_type: str, revision: str) -> FileEntry:
        repo = self.store.get(repo_type, repo_id)
        if repo is None:
            raise KeyError(f"{repo_type}s/{repo_id}")
        with self.store.lock:
            entry = self.store.resolve(repo, revision)["files"].get(path)
        if entry is None:
            raise KeyError(path)
        return entry

    def corrupt_file(
        self, repo_id: str, path: str, repo_type: str = "dataset", revision: str = "main"
    ) -> None:
        """Flip the first byte of the stored content of ``path``: same size, other sha256.
        Objects are content-addressed: every repo sharing that content sees the damage."""
        entry = self._entry_of(repo_id, path, repo_type, revision)
        with self.store.object_path(entry["sha256"]).open("r+b") as f:
            first = f.read(1) or b"\0"
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))

    def remove_file(
        self, repo_id: str, path: str, repo_type: str = "dataset", branch: str = "main"
    ) -> str:
        """Delete ``path`` with a server-side commit (as if someone removed it); its id.
        ``branch`` may also be an open PR's "refs/pr/N"."""
        self._entry_of(repo_id, path, repo_type, branch)
        repo = self.store.get(repo_type, repo_id)
        assert repo is not None
        with self.store.lock:
            branch = self._writable_ref(repo, branch)
            files = {p: e for p, e in repo.head(branch)["files"].items() if p != path}
            return self.store.commit(repo, branch, files, f"Delete {path}", "", repo.owner)

    def do_admin(self, req: Request) -> Reply:
        self.require_user(req.user, "use the admin API")
        payload = req.json() if req.method == "POST" else {}
        try:
            match req.method, req.route.extra:
                case "GET", "faults":
                    return json_reply(self.faults.pending())
                case "POST", "faults":
                    return json_reply(asdict(self.faults.add(**payload)))
                case "DELETE", "faults":
                    self.faults.clear()
                case "GET", "stats":
                    repo_type = req.arg("repo_type", "dataset")
                    return json_reply(self.stats(req.arg("repo_id"), repo_type))
                case "POST", "reset-stats":
                    self.reset_stats()
                case "GET", "requests":
                    return json_reply(self.request_log)
                case "POST", "corrupt":
                    self.corrupt_file(**payload)
                case "POST", "remove-file":
                    return json_reply({"commitOid": self.remove_file(**payload)})
                case _:
                    raise HubError(404, "Unknown admin endpoint")
        except (KeyError, TypeError, ValueError) as e:
            raise HubError(400, f"Bad admin request: {e!r}") from e
        return json_reply({})


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Abort(Exception):
    """Raised to reset the client connection (fault injection)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    server_version = "LocalHub/1.0"
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
        route, query = parse_route(split.path), parse_qs(split.query, keep_blank_values=True)
        body = _Body(self.rfile, self.headers)
        entry = self._log_entry = {"method": method, "path": split.path, "route": route.name,
                                   "status": None}
        if route.name != "admin":  # the admin API is neither logged, counted nor faulted
            hub.request_log.append(entry)
            hub.count(route.repo_type, route.repo_id, f"requests.{route.name}")
        drop_after: int | None = None
        try:
            for fault in hub.faults.take(method, split.path) if route.name != "admin" else []:
                if fault.kind == "delay":
                    time.sleep(fault.seconds)
                elif fault.kind == "status":
                    after = fault.retry_after
                    retry = {} if after is None else {"Retry-After": str(after)}
                    message = f"Injected fault: HTTP {fault.status}"
                    raise HubError(fault.status, message, headers=retry)
                elif body.present and not fault.on_response:  # an upload: cut while receiving
                    self._receive_then_drop(body, fault.after_bytes, route, query)
                else:  # a download, or a lost reply: cut while sending
                    drop_after = fault.after_bytes
            reply = hub.handle(Request(method, route, query, self.headers, body))
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
            self._drain(body)
            self._send(reply, route, drop_after)
        except _Abort:
            pass
        except (ConnectionError, TimeoutError):
            entry["status"] = "client-disconnected"
            self.close_connection = True

    def _drain(self, body: _Body) -> None:
        """Read what the Hub did not, so the keep-alive connection stays in sync."""
        while body.read():
            pass

    def _receive_then_drop(
        self, body: _Body, after_bytes: int, route: Route, query: dict[str, list[str]]
    ) -> None:
        while body.received < after_bytes and (chunk := body.read(after_bytes - body.received)):
            if route.name == "lfs_upload":  # partial uploads count: they did cost bandwidth
                repo = query.get("repo_type", [""])[0], query.get("repo_id", [""])[0]
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
        self.send_header("Content-Length", str(reply.length if reply.file else len(reply.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0

        def write(chunk: bytes) -> None:
            nonlocal sent
            if drop_after is not None and sent + len(chunk) > drop_after:
                self.wfile.write(chunk[: drop_after - sent])
                self.wfile.flush()
                self._abort()
            self.wfile.write(chunk)
            sent += len(chunk)

        if reply.file is None:
            write(reply.body)
            return
        hub = self.server.hub
        with reply.file.open("rb") as f:
            f.seek(reply.start)
            left = reply.length
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                write(chunk)
                left -= len(chunk)
                hub.count(route.repo_type, route.repo_id, "download_bytes_sent", len(chunk))


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
    ``{token: user}`` mapping; ``.token`` is the first one, for convenience.
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
    ) -> None:
        self.hub = Hub(storage, tokens, lfs_threshold=lfs_threshold,
                       allow_anonymous_read=allow_anonymous_read)
        self.token: str = next(iter(self.hub.tokens))
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

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
        self.hub.corrupt_file(repo_id, path, repo_type, revision)

    def remove_file(
        self, repo_id: str, path: str, repo_type: str = "dataset", branch: str = "main"
    ) -> str:
        return self.hub.remove_file(repo_id, path, repo_type, branch)


class _RemoteFaults:
    def __init__(self, admin: HubAdminClient) -> None:
        self._admin = admin

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


def _parse_tokens(values: list[str]) -> dict[str, str]:
    """``TOKEN`` (user test-user) or ``USER=TOKEN``."""
    tokens = {}
    for value in values:
        user, sep, token = value.rpartition("=")
        tokens[token] = user if sep else DEFAULT_USER
    return tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--storage", required=True, help="directory for repos and objects")
    parser.add_argument("--token", action="append", required=True,
                        help="a valid token, TOKEN or USER=TOKEN; repeatable")
    parser.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    parser.add_argument("--allow-anonymous-read", action="store_true",
                        help="serve public repos without a token, as the Hub does")
    parser.add_argument("--verbose", action="store_true", help="log request lines (no headers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s")
    server = HubServer(args.storage, _parse_tokens(args.token), host=args.host, port=args.port,
                       lfs_threshold=args.lfs_threshold,
                       allow_anonymous_read=args.allow_anonymous_read)
    server.start()
    print(f"Hub test server listening on {server.url}", flush=True)
    stop = threading.Event()
    # Explicit SIGINT handler too: shells start background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
