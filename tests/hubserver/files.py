"""Downloads: ``GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}``, with ``Range``.

Headers as huggingface_hub reads them: ``X-Repo-Commit`` (on a 404 too: hf_hub_download
caches the non-existence per commit), ``ETag`` (git oid, or sha256 for LFS files),
``X-Linked-Etag``/``X-Linked-Size`` (LFS and Xet files; on the Hub they come with the CDN
redirect), and for Xet files ``X-Xet-Hash`` plus ``Link: <.../xet-read-token/{commit}>;
rel="xet-auth"``, which make hf_hub_download use hf_xet instead of this GET.

The bytes themselves are served here (200/206) where the Hub redirects to its CDN or its
Xet bridge: regular and LFS files from the object store, Xet files through the bridge
(xet.py). The body bytes count as ``download_bytes_sent`` of the repo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from .protocol import HubError, Reply, Request, parse_range

if TYPE_CHECKING:
    from .hub import Hub


def resolve(hub: Hub, req: Request) -> Reply:
    repo = hub.readable_repo(req)
    with hub.store.lock:
        commit = repo.resolve(req.route.revision or "main")
    common = {"X-Repo-Commit": commit.id}
    entry = commit.files.get(req.route.path)
    if entry is None:
        raise HubError(404, "Entry not found", "EntryNotFound", common)
    xet_file = hub.cas.files.get(entry.xet_hash) if entry.xet_hash else None
    headers = {
        **common,
        "ETag": f'"{entry.remote_oid}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'inline; filename="{quote(req.route.path.split("/")[-1])}"',
    }
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.sha256}"'
        headers["X-Linked-Size"] = str(entry.size)
    if xet_file is not None and hub.xet_enabled:  # else the client uses this GET
        api = f"{hub.base_url}/api/{repo.repo_type}s/{repo.repo_id}"
        token_url = f"{api}/xet-read-token/{commit.id}"
        headers["X-Xet-Hash"] = xet_file.hash
        headers["Link"] = f'<{token_url}>; rel="xet-auth"'
    if xet_file is None and not hub.store.has_object(entry.sha256):
        raise HubError(500, f"Stored content of {req.route.path} is missing", headers=common)
    try:
        rng = parse_range(req.headers.get("Range"), entry.size)
    except HubError as e:
        e.headers.update(common)
        raise
    start, end = rng or (0, entry.size - 1)
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    length = end - start + 1
    if xet_file is not None:
        stream = (hub.bridge.stream(repo.repo_type, repo.repo_id, xet_file, start, end)
                  if length > 0 and req.method == "GET" else iter(()))
        return Reply(status, headers=headers, stream=stream, length=length,
                     counters=("download_bytes_sent",))
    return Reply(status, headers=headers, file=hub.store.object_path(entry.sha256), start=start,
                 length=length, counters=("download_bytes_sent",))
