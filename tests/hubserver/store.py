"""Repositories on disk: typed records for repos, commits, pull requests and file entries,
plus the content-addressed object store that holds regular files and LFS objects.

Everything lives under one storage folder and is reloaded on start, so a server restarted on
the same folder serves the same repos::

    objects/<sha256[:2]>/<sha256>        regular files and LFS objects (not Xet: see xet.py)
    repos/<type>/<ns>/<name>.json        one document per repo: refs, commits, pull requests
    tmp/                                 partial uploads, renamed into objects/ when complete
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .protocol import HubError

DEFAULT_USER = "test-user"
# Sent to LFS whatever their size: mostly the Hub's default .gitattributes, plus NIfTI.
LFS_SUFFIXES = (
    ".parquet", ".arrow", ".nii", ".nii.gz", ".gz", ".zip", ".tar", ".zst", ".bin", ".h5",
    ".npy", ".npz", ".pt", ".pkl", ".safetensors", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
)  # fmt: skip
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
PR_REF = re.compile(r"refs/pr/([1-9][0-9]*)")
Gated = bool | str  # False, "auto" or "manual", as the Hub reports it


def now_iso() -> str:
    """The Hub's timestamp format, which huggingface_hub's parse_datetime expects."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, which the Hub reports as a file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def valid_branch_name(name: str) -> bool:
    """A subset of git's ref-name rules; ``refs/...`` names are the Hub's own (PRs, converts)."""
    return (re.fullmatch(r"[A-Za-z0-9._/-]+", name) is not None
            and not name.startswith(("refs/", "/", "-", "."))
            and not name.endswith(("/", ".", ".lock"))
            and ".." not in name and "//" not in name and "/." not in name)


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit. ``sha256`` names the stored content; ``oid`` is what the Hub
    reports as the file's git oid (of the blob, or of the LFS pointer); ``xet_hash`` is set
    when the content is in the Xet CAS (such files are LFS files too, as on the Hub)."""

    sha256: str
    size: int
    lfs: bool
    oid: str
    pointer_size: int | None = None
    xet_hash: str | None = None

    @classmethod
    def large(cls, sha256: str, size: int, xet_hash: str | None = None) -> FileEntry:
        pointer = lfs_pointer(sha256, size)
        return cls(sha256, size, True, git_blob_oid(pointer), len(pointer), xet_hash)

    @property
    def remote_oid(self) -> str:
        """The oid flavour of huggingface_hub's ``CommitOperationAdd._local_oid``."""
        return self.sha256 if self.lfs else self.oid


@dataclass
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    date: str
    authors: list[str]
    # A full snapshot of the files (path -> entry): tiny, and simple.
    files: dict[str, FileEntry]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Commit:
        files = {p: FileEntry(**e) for p, e in data.pop("files").items()}
        return cls(**data, files=files)


@dataclass
class PullRequest:
    num: int
    target: str  # the branch it was opened against
    title: str
    author: str
    created_at: str
    status: str = "open"  # "open", or "draft" when opened empty; no merging here


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    owner: str
    created_at: str
    gated: Gated = False
    # Heads by ref name: branches ("main") and pull requests ("refs/pr/1"), which branch
    # names cannot clash with (valid_branch_name refuses "refs/...").
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Repo:
        commits = {sha: Commit.from_json(c) for sha, c in data.pop("commits").items()}
        pulls = {int(n): PullRequest(**p) for n, p in data.pop("pulls").items()}
        return cls(**data, commits=commits, pulls=pulls)

    def head(self, ref: str = "main") -> Commit:
        return self.commits[self.refs[ref]]

    def branches(self) -> dict[str, str]:
        return {name: sha for name, sha in self.refs.items() if not name.startswith("refs/")}

    def writable_ref(self, revision: str | None, create_pr: bool = False) -> str:
        """The ref a commit goes to: a branch, or an open pull request's "refs/pr/N"; with
        ``create_pr`` the branch the new pull request targets (a PR cannot target a PR)."""
        ref = revision or "main"
        pr = PR_REF.fullmatch(ref)
        if ref in self.branches() or (pr and not create_pr and int(pr[1]) in self.pulls
                                       and self.pulls[int(pr[1])].status in ("open", "draft")):
            return ref
        raise HubError(404, f"Invalid rev id: {ref}", "RevisionNotFound")

    def resolve(self, revision: str) -> Commit:
        """Branch name, "refs/pr/N" or (abbreviated, >= 7 chars) commit id -> commit."""
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [c for sha, c in self.commits.items() if sha.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, commit: Commit) -> Iterator[Commit]:
        while True:
            yield commit
            if not commit.parents:
                return
            commit = self.commits[commit.parents[0]]

    def open_pull_request(self, target: str, title: str, author: str,
                          status: str = "open") -> int:
        """Number the next PR from 1 (on the Hub, PRs share numbers with discussions)."""
        num = max(self.pulls, default=0) + 1
        self.pulls[num] = PullRequest(num, target, title, author, now_iso(), status)
        return num


class Store:
    """Repos and objects on disk under ``root``; ``lock`` guards repos and their refs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.repos_dir = self.root / "repos"
        self.tmp = self.root / "tmp"
        for d in (self.objects, self.repos_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        for path in self.repos_dir.glob("*/*/*.json"):
            repo = Repo.from_json(json.loads(path.read_text()))
            self.repos[(repo.repo_type, repo.repo_id)] = repo

    # objects ----------------------------------------------------------------------------
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
        return FileEntry(self.put_bytes(data), len(data), False, git_blob_oid(data))

    # repos ------------------------------------------------------------------------------
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
        the ref's head), saved with the ref moved to it. Commit ids are random sha1s."""
        parent = parent or repo.refs.get(ref)
        seed = json.dumps([parent, sorted(files), title, time.time_ns(), secrets.token_hex(4)])
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[sha] = Commit(sha, [parent] if parent else [], title, message, now_iso(),
                                   [user], files)
        repo.refs[ref] = sha
        self.save(repo)
        return sha


def all_dirs(files: Iterable[str]) -> set[str]:
    """Every folder implied by a set of file paths."""
    dirs: set[str] = set()
    for path in files:
        parts = path.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return dirs


def dir_oid(files: Mapping[str, FileEntry], folder: str) -> str:
    """A stable id for a folder's content (the Hub reports its git tree oid)."""
    listing = sorted(f"{p}:{e.oid}" for p, e in files.items() if p.startswith(folder + "/"))
    return hashlib.sha1("\n".join(listing).encode()).hexdigest()
