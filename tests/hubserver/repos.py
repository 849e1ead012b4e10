"""Repo API handlers: account, repos and their settings, refs and branches, pull requests,
listings (tree, paths-info), preupload and the NDJSON commit."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .protocol import HubError, Reply, Request, Route, json_reply
from .store import LFS_SUFFIXES, Commit, FileEntry, Repo, all_dirs, dir_oid, valid_branch_name

if TYPE_CHECKING:
    from .hub import Hub

GATED_VALUES = ("auto", "manual", False)


# account and repos ----------------------------------------------------------------------------


def whoami(hub: Hub, req: Request) -> Reply:
    user = hub.require_user(req.user, "call whoami")
    token_info = {"displayName": "test", "role": "write"}
    return json_reply({
        "type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user,
        "fullname": user, "email": None, "emailVerified": False, "isPro": False, "orgs": [],
        "auth": {"type": "access_token", "accessToken": token_info},
    })


def validate_yaml(hub: Hub, req: Request) -> Reply:
    content = req.json().get("content", "")
    # Only checks that a front-matter block is closed; the Hub validates the metadata.
    if content.startswith("---") and "\n---" not in content[3:]:
        return json_reply({"errors": [{"message": "Unclosed YAML front matter"}],
                           "warnings": []}, 400)
    return json_reply({"errors": [], "warnings": []})


def _repo_from_payload(payload: dict[str, Any], user: str) -> tuple[str, str]:
    repo_type = payload.get("type") or "model"
    name, namespace = payload.get("name") or "", payload.get("organization") or user
    if repo_type not in ("model", "dataset", "space"):
        raise HubError(400, f"Invalid repo type {repo_type!r}")
    if not re.fullmatch(r"[\w.-]+", namespace) or not re.fullmatch(r"[\w.-]+", name):
        raise HubError(400, f"Invalid repo name {namespace}/{name}")
    return repo_type, f"{namespace}/{name}"


def create(hub: Hub, req: Request) -> Reply:
    user = hub.require_user(req.user, "create a repository")
    payload = req.json()
    repo_type, repo_id = _repo_from_payload(payload, user)
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    url = f"{hub.base_url}/{prefix}{repo_id}"
    with hub.store.lock:
        if hub.store.get(repo_type, repo_id) is not None:
            # huggingface_hub's create_repo(exist_ok=True) swallows exactly this 409.
            error = f"You already created this {repo_type} repo"
            return json_reply({"error": error, "url": url}, 409)
        hub.store.create(repo_type, repo_id, private, user)
    return json_reply({"url": url, "name": repo_id, "id": repo_id})


def delete(hub: Hub, req: Request) -> Reply:
    user = hub.require_user(req.user, "delete a repository")
    req.route = Route("repo_delete", *_repo_from_payload(req.json(), user))
    repo, _ = hub.writable_repo(req)
    with hub.store.lock:
        hub.store.delete(repo)
    return Reply()


def info(hub: Hub, req: Request) -> Reply:
    repo = hub.readable_repo(req)
    with hub.store.lock:
        commit = repo.resolve(req.route.revision or "main")
    siblings = []
    for path, e in sorted(commit.files.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if req.flag("blobs"):  # repo_info(files_metadata=True)
            sibling.update(size=e.size, blobId=e.oid)
            if e.lfs:
                sibling["lfs"] = {"size": e.size, "sha256": e.sha256, "pointerSize": e.pointer_size}
        siblings.append(sibling)
    out: dict[str, Any] = {
        "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
        "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.id,
        "createdAt": repo.created_at, "lastModified": commit.date,
        # "gated" is false, "auto" or "manual", as the Hub reports it.
        "private": repo.private, "gated": repo.gated, "disabled": False, "downloads": 0,
        "likes": 0, "tags": [], "siblings": siblings,
        "usedStorage": sum(e.size for e in commit.files.values()),
    }
    if repo.repo_type == "model":
        out["modelId"] = repo.repo_id
    return json_reply(out)


def settings(hub: Hub, req: Request) -> Reply:
    """``PUT .../settings`` as ``HfApi.update_repo_settings`` sends it: ``{"gated": "auto" |
    "manual" | false, "visibility": "private" | "public"}`` (either or both)."""
    repo, _ = hub.writable_repo(req)
    payload = req.json()
    if not isinstance(payload, dict) or not payload.keys() & {"gated", "visibility", "private"}:
        raise HubError(400, "Nothing to update: expected gated and/or visibility")
    gated = payload.get("gated", repo.gated)
    if gated not in GATED_VALUES:
        raise HubError(400, f"Invalid gated value {gated!r}: expected 'auto', 'manual' or false")
    visibility = payload.get("visibility")
    if visibility not in (None, "private", "public"):
        raise HubError(400, f"Invalid visibility {visibility!r} for a {repo.repo_type} repo")
    with hub.store.lock:
        repo.gated = gated
        if visibility is not None:
            repo.private = visibility == "private"
        elif "private" in payload:
            repo.private = bool(payload["private"])
        hub.store.save(repo)
    return json_reply({})


# refs, branches, commits, pull requests ---------------------------------------------------------


def refs(hub: Hub, req: Request) -> Reply:
    repo = hub.readable_repo(req)
    with hub.store.lock:
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                    for b, sha in repo.branches().items()]
        out: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if req.flag("include_prs"):  # list_repo_refs(include_pull_requests=True)
            out["pullRequests"] = [{"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}",
                                    "targetCommit": repo.refs[f"refs/pr/{n}"]}
                                   for n in sorted(repo.pulls)]
    return json_reply(out)


def branch(hub: Hub, req: Request) -> Reply:
    repo, _ = hub.writable_repo(req)
    name = req.route.revision or ""
    if req.method == "DELETE":
        with hub.store.lock:
            if name not in repo.branches():
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            if name == "main":
                raise HubError(403, "The default branch cannot be deleted")
            del repo.refs[name]  # its commits stay reachable by id, as in git until gc
            hub.store.save(repo)
        return Reply()
    payload = req.json()  # create_branch always posts a JSON object, maybe empty
    if not valid_branch_name(name):
        raise HubError(400, f"Invalid reference for a branch: {name}")
    with hub.store.lock:
        start = repo.resolve(str(payload.get("startingPoint") or "main"))
        if name in repo.refs:
            # create_branch(exist_ok=True) swallows exactly this 409.
            raise HubError(409, f"Reference already exists: refs/heads/{name}")
        repo.refs[name] = start.id
        hub.store.save(repo)
    return Reply()


def commits(hub: Hub, req: Request) -> Reply:
    repo = hub.readable_repo(req)
    with hub.store.lock:
        history = list(repo.history(repo.resolve(req.route.revision or "main")))
    return json_reply([
        {"id": c.id, "title": c.title, "message": c.message, "date": c.date,
         "authors": [{"user": a, "avatar": None} for a in c.authors]}
        for c in history
    ])


def create_discussion(hub: Hub, req: Request) -> Reply:
    """``POST .../discussions`` with ``pullRequest: true`` (``HfApi.create_pull_request``,
    used by upload_folder(create_pr=True) over Xet): a draft PR whose ref starts at main's
    head. Plain discussions are not modelled."""
    repo, user = hub.writable_repo(req)
    payload = req.json()
    if not payload.get("pullRequest"):
        raise HubError(400, "Only pull requests are supported by this server")
    title = str(payload.get("title") or "").strip()
    if not title:
        raise HubError(400, "A title is required")
    with hub.store.lock:
        num = repo.open_pull_request("main", title, user, status="draft")
        repo.refs[f"refs/pr/{num}"] = repo.refs["main"]
        hub.store.save(repo)
    return json_reply({"num": num, "url": f"{hub.repo_url(repo)}/discussions/{num}"})


def discussion(hub: Hub, req: Request) -> Reply:
    repo = hub.readable_repo(req)
    num = int(req.route.path) if req.route.path.isdigit() else 0
    pr = repo.pulls.get(num)
    if pr is None:
        raise HubError(404, f"Discussion {req.route.path} not found", "DiscussionNotFound")
    return json_reply({
        "num": pr.num, "title": pr.title, "status": pr.status, "isPullRequest": True,
        "createdAt": pr.created_at, "author": {"name": pr.author},
        "repo": {"name": repo.repo_id, "type": repo.repo_type}, "events": [],
        "changes": {"base": f"refs/heads/{pr.target}"}, "filesWithConflicts": [], "diff": "",
    })


# tree / paths-info --------------------------------------------------------------------------


def _last_commit(repo: Repo, commit: Commit, path: str) -> dict[str, str]:
    """The oldest commit, walking back from ``commit``, since which ``path`` is unchanged."""

    def state(c: Commit) -> Any:
        if path in c.files:
            return c.files[path].oid
        return sorted((p, e.oid) for p, e in c.files.items() if p.startswith(path + "/"))

    found, current = commit, state(commit)
    for older in repo.history(commit):
        if state(older) != current:
            break
        found = older
    return {"id": found.id, "title": found.title, "date": found.date}


def _entry(repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
    """A tree/paths-info entry. Xet files carry ``xetHash`` next to ``lfs``, as on the Hub
    (huggingface_hub's tree cache needs both to skip the HEAD call)."""
    files = commit.files
    if path in files:
        e: FileEntry = files[path]
        out: dict[str, Any] = {"type": "file", "oid": e.oid, "size": e.size, "path": path}
        if e.lfs:
            out["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
        if e.xet_hash:
            out["xetHash"] = e.xet_hash
    else:
        out = {"type": "directory", "oid": dir_oid(files, path), "size": 0, "path": path}
    if expand:
        out["lastCommit"] = _last_commit(repo, commit, path)
    return out


def tree(hub: Hub, req: Request) -> Reply:
    repo, expand = hub.readable_repo(req), req.flag("expand")
    with hub.store.lock:
        commit = repo.resolve(req.route.revision or "main")
        files, folder = commit.files, req.route.path.strip("/")
        dirs = all_dirs(files)
        if folder in files:  # listing a file returns the file itself
            return json_reply([_entry(repo, commit, folder, expand)])
        if folder and folder not in dirs:
            raise HubError(404, f"{folder} does not exist", "EntryNotFound")
        prefix = folder + "/" if folder else ""
        below = [p for p in dirs | files.keys() if p.startswith(prefix)]
        if not req.flag("recursive"):
            below = [p for p in below if "/" not in p[len(prefix):]]
        below.sort(key=lambda p: (p not in dirs, p))  # folders first, like the Hub
        # Everything in one page: the client only paginates when a Link header says so.
        return json_reply([_entry(repo, commit, p, expand) for p in below])


def paths_info(hub: Hub, req: Request) -> Reply:
    repo = hub.readable_repo(req)
    raw = req.body.read_all()
    if "json" in req.headers.get("Content-Type", ""):
        payload = json.loads(raw or b"{}")
        paths, expand = payload.get("paths", []), bool(payload.get("expand"))
    else:  # huggingface_hub posts a form: paths=a&paths=b&expand=false
        form = parse_qs(raw.decode(), keep_blank_values=True)
        paths = form.get("paths", [])
        expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
    with hub.store.lock:
        commit = repo.resolve(req.route.revision or "main")
        known = commit.files.keys() | all_dirs(commit.files)
        wanted = [p.strip("/") for p in paths]  # missing paths are silently omitted
        return json_reply([_entry(repo, commit, p, expand) for p in wanted if p in known])


# upload -----------------------------------------------------------------------------------------


def upload_mode(hub: Hub, path: str, size: int, sample: bytes) -> str:
    """LFS if size >= ``lfs_threshold``, a data suffix or a NUL byte in the 512-byte sample.
    (huggingface_hub then sends "lfs" files over Xet when hf_xet is available.)"""
    is_data = path.lower().endswith(LFS_SUFFIXES) or b"\0" in sample
    return "lfs" if size >= hub.lfs_threshold or is_data else "regular"


def preupload(hub: Hub, req: Request) -> Reply:
    repo, _ = hub.writable_repo(req)
    payload = req.json()
    with hub.store.lock:
        # Only reports modes and current oids: any revision reads; commit checks the ref.
        head = repo.resolve(req.route.revision or "main")
    out = []
    for f in payload.get("files", []):
        sample = base64.b64decode(f.get("sample", ""))
        remote = head.files.get(f["path"])
        # On a match with CommitOperationAdd._local_oid, the client drops the file.
        oid = None if remote is None else remote.remote_oid
        mode = upload_mode(hub, f["path"], int(f["size"]), sample)
        out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
    return json_reply({"files": out, "commitOid": head.id})


def _apply(hub: Hub, files: dict[str, FileEntry], key: str, value: dict[str, Any]) -> int:
    """Apply one commit operation to ``files``; returns the regular bytes it added."""
    path = str(value.get("path", "")).strip("/")
    if not path or ".." in path.split("/"):
        raise HubError(400, f"Invalid path {value.get('path')!r}")
    if key == "file":
        content = value["content"]
        data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
        if len(data) >= hub.lfs_threshold:
            raise HubError(400, f"{path} is over {hub.lfs_threshold} bytes: use LFS")
        files[path] = hub.store.regular_entry(data)
        return len(data)
    if key == "lfsFile":
        # Over Xet, the commit carries the sha256 and size only: the Xet hash comes from the
        # shards the client wrote to the CAS; over LFS, the object must be in the store.
        oid, size = str(value.get("oid", "")), value.get("size")
        xet_file = hub.cas.find(oid, size) if hub.xet_enabled else None
        if xet_file is not None:
            files[path] = FileEntry.large(oid, xet_file.size, xet_file.hash)
        elif hub.store.has_object(oid):
            stored = hub.store.object_path(oid).stat().st_size
            if size not in (None, stored):
                raise HubError(400, f"LFS object {oid} has size {stored}, not {size}")
            files[path] = FileEntry.large(oid, stored)
        else:
            raise HubError(400, f"LFS object {oid} for {path} was not uploaded (neither to LFS "
                                "nor to the Xet CAS)")
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


def commit(hub: Hub, req: Request) -> Reply:
    """A commit on a branch or an open PR; with ``?create_pr=1`` (how huggingface_hub says
    it) a new PR against the branch, based on its head or on ``parentCommit``."""
    repo, user = hub.writable_repo(req)
    create_pr = req.flag("create_pr")
    lines = [json.loads(line) for line in req.body.read_all().splitlines() if line.strip()]
    header: dict[str, Any] = next(
        (item["value"] for item in lines if item.get("key") == "header"), {})
    if not header.get("summary"):
        raise HubError(400, "Missing commit header with a summary")
    wanted_parent = header.get("parentCommit")
    hub.collect_xet_uploads()
    with hub.store.lock:
        ref = repo.writable_ref(req.route.revision, create_pr)
        parent = repo.refs[ref]
        if create_pr and wanted_parent:  # the PR starts from that commit
            parent = repo.resolve(wanted_parent).id
        elif wanted_parent and not parent.startswith(wanted_parent):
            raise HubError(412, "A commit has happened since the given parent commit")
        files = dict(repo.commits[parent].files)
        regular_bytes = sum(_apply(hub, files, item.get("key"), item.get("value", {}))
                            for item in lines if item.get("key") != "header")
        if clash := all_dirs(files) & files.keys():
            raise HubError(400, f"Paths used both as file and folder: {sorted(clash)}")
        pr_url = None
        if create_pr:
            num = repo.open_pull_request(ref, header["summary"], user)
            ref = f"refs/pr/{num}"
            pr_url = f"{hub.repo_url(repo)}/discussions/{num}"
        # One save holds the new PR (if any), the commit and the moved ref.
        sha = hub.store.commit(repo, ref, files, header["summary"],
                               header.get("description", ""), user, parent)
    hub.count(repo.repo_type, repo.repo_id, "commits")
    hub.count(repo.repo_type, repo.repo_id, "regular_bytes_committed", regular_bytes)
    # CommitInfo derives pr_revision ("refs/pr/N") and pr_num from pullRequestUrl.
    return json_reply({"success": True, "commitOid": sha,
                       "commitUrl": f"{hub.repo_url(repo)}/commit/{sha}",
                       "hookOutput": "", "pullRequestUrl": pr_url})
