"""Test-only helpers, not part of the Hub: damage or remove a stored file behind the
clients' back, and the ``/_admin/...`` API that exposes every helper (faults, stats, request
log) to a server running in another process. Any valid token may use it."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from .protocol import HubError, Reply, Request, json_reply
from .store import FileEntry

if TYPE_CHECKING:
    from .hub import Hub


def _entry_of(hub: Hub, repo_id: str, path: str, repo_type: str, revision: str) -> FileEntry:
    repo = hub.store.get(repo_type, repo_id)
    if repo is None:
        raise KeyError(f"{repo_type}s/{repo_id}")
    with hub.store.lock:
        entry = repo.resolve(revision).files.get(path)
    if entry is None:
        raise KeyError(path)
    return entry


def corrupt_file(
    hub: Hub, repo_id: str, path: str, repo_type: str = "dataset", revision: str = "main"
) -> None:
    """Change one byte of the stored content of ``path``: same size, other sha256. Storage is
    content-addressed (objects by sha256, Xet chunks in shared xorbs): every repo sharing
    that content sees the damage."""
    entry = _entry_of(hub, repo_id, path, repo_type, revision)
    if entry.xet_hash is not None and entry.xet_hash in hub.cas.files:
        hub.cas.corrupt(hub.cas.files[entry.xet_hash])
        return
    with hub.store.object_path(entry.sha256).open("r+b") as f:
        first = f.read(1) or b"\0"
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


def remove_file(
    hub: Hub, repo_id: str, path: str, repo_type: str = "dataset", branch: str = "main"
) -> str:
    """Delete ``path`` with a server-side commit (as if someone removed it); its id.
    ``branch`` may also be an open PR's "refs/pr/N"."""
    _entry_of(hub, repo_id, path, repo_type, branch)
    repo = hub.store.get(repo_type, repo_id)
    assert repo is not None
    with hub.store.lock:
        branch = repo.writable_ref(branch)
        files = {p: e for p, e in repo.head(branch).files.items() if p != path}
        return hub.store.commit(repo, branch, files, f"Delete {path}", "", repo.owner)


def handle(hub: Hub, req: Request) -> Reply:
    hub.require_user(req.user, "use the admin API")
    payload = req.json() if req.method == "POST" else {}
    try:
        match req.method, req.route.path:
            case "GET", "faults":
                return json_reply(hub.faults.pending())
            case "POST", "faults":
                return json_reply(asdict(hub.faults.add(**payload)))
            case "DELETE", "faults":
                hub.faults.clear()
            case "GET", "stats":
                return json_reply(hub.stats(req.arg("repo_id"), req.arg("repo_type", "dataset")))
            case "POST", "reset-stats":
                hub.reset_stats()
            case "GET", "requests":
                return json_reply(hub.request_log)
            case "POST", "corrupt":
                corrupt_file(hub, **payload)
            case "POST", "remove-file":
                return json_reply({"commitOid": remove_file(hub, **payload)})
            case _:
                raise HubError(404, "Unknown admin endpoint")
    except (KeyError, TypeError, ValueError) as e:
        raise HubError(400, f"Bad admin request: {e!r}") from e
    return json_reply({})
