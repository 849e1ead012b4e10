"""The legacy LFS transfer (what clients use with ``HF_HUB_DISABLE_XET=1``): the batch API,
pre-signed upload URLs and the verify call.

``POST /{prefix}{repo}.git/info/lfs/objects/batch`` answers, per object, no ``actions`` when
the object is already stored (the client skips it), else an ``upload`` href and a ``verify``
href. The upload href is pre-signed like the Hub's storage URLs (``...&expires=&sig=``,
HMAC of the object, size, repo and expiry): the client sends it no Authorization header.
No ``chunk_size`` header is ever set, which keeps the client on single-part uploads.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from .protocol import HubError, Reply, Request, json_reply

if TYPE_CHECKING:
    from .hub import Hub

UPLOAD_URL_TTL = 3600
_SECRET = os.urandom(32)  # signs upload hrefs (valid for this process)


def _sign(*parts: str) -> str:
    return hmac.new(_SECRET, ":".join(parts).encode(), hashlib.sha256).hexdigest()


def batch(hub: Hub, req: Request) -> Reply:
    repo, _ = hub.writable_repo(req)
    payload = req.json()
    if payload.get("operation") != "upload":
        raise HubError(400, "Only the 'upload' operation is supported")
    if "basic" not in payload.get("transfers", ["basic"]):
        raise HubError(400, "Only the 'basic' transfer is supported")
    objects = []
    for obj in payload.get("objects", []):
        oid, size = str(obj.get("oid", "")), obj.get("size")
        if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
            objects.append({"oid": oid, "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "Invalid oid or size"}})
        elif hub.store.has_object(oid, size):
            hub.count(repo.repo_type, repo.repo_id, "lfs_objects_skipped")
            objects.append({"oid": oid, "size": size})  # no "actions": client skips it
        else:
            expires = str(int(time.time()) + UPLOAD_URL_TTL)
            signed = {"size": size, "repo_type": repo.repo_type, "repo_id": repo.repo_id,
                      "expires": expires,
                      "sig": _sign(oid, str(size), repo.repo_type, repo.repo_id, expires)}
            actions = {
                "upload": {"href": f"{hub.base_url}/_lfs/upload/{oid}?{urlencode(signed)}",
                           "expires_in": UPLOAD_URL_TTL},
                "verify": {"href": f"{hub.repo_url(repo)}.git/info/lfs/objects/verify",
                           "header": {}},
            }
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
    return json_reply({"transfer": "basic", "objects": objects},
                      headers={"Content-Type": "application/vnd.git-lfs+json"})


def upload(hub: Hub, req: Request) -> Reply:
    """``PUT /_lfs/upload/{oid}?<signed>``: stream to a temp file, check size and sha256,
    then rename into the object store."""
    oid, repo_type, repo_id = req.route.path, req.arg("repo_type"), req.arg("repo_id")
    size, expires = req.arg("size"), req.arg("expires")
    expected = _sign(oid, size, repo_type, repo_id, expires)
    if (not hmac.compare_digest(req.arg("sig"), expected) or not expires.isdigit()
            or int(expires) < time.time()):
        raise HubError(403, "Invalid or expired upload signature")
    tmp = hub.store.tmp / f"{oid}.{secrets.token_hex(4)}.part"
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as f:
            while chunk := req.body.read():
                digest.update(chunk)
                f.write(chunk)
                hub.count(repo_type, repo_id, "upload_bytes_received", len(chunk))
        if req.body.received != int(size):
            raise HubError(400, f"Expected {size} bytes, received {req.body.received}")
        if digest.hexdigest() != oid:
            raise HubError(400, "The sha256 of the uploaded content does not match the oid")
        with hub.store.lock:
            if not hub.store.has_object(oid, int(size)):
                hub.store.adopt(tmp, oid)
    finally:
        tmp.unlink(missing_ok=True)
    for key, n in (("lfs_objects_uploaded", 1), ("lfs_bytes_uploaded", int(size)),
                   ("files_stored", 1), ("bytes_stored", int(size))):
        hub.count(repo_type, repo_id, key, n)
    return Reply(headers={"ETag": f'"{oid}"'})


def verify(hub: Hub, req: Request) -> Reply:
    hub.writable_repo(req)
    payload = req.json()
    if not hub.store.has_object(str(payload.get("oid")), payload.get("size")):
        raise HubError(404, "Object not found or size mismatch")
    return json_reply({"success": True})
