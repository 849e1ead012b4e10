"""The route table: URL patterns -> route names -> (methods, handler).

Patterns are written as the Hub's URLs, one segment per ``/``. Placeholders: ``{type}`` (models,
datasets or spaces), ``{ns}`` and ``{name}`` (the repo id), ``{name.git}`` (the repo name
plus ".git"), ``{rev}`` (one segment), ``{id}`` (one segment), ``{path*}`` / ``{path+}``
(the rest, maybe empty / not empty). File routes (``resolve``, LFS) put ``datasets/`` or
``spaces/`` before the repo id and nothing for models: the parser strips that prefix first.

Paths arrive percent-encoded. The clients quote revisions with ``safe=""`` (``refs/pr/1``
arrives as ``refs%2Fpr%2F1``): the path is split first, then each segment unquoted, so an
unquoted ``refs/pr/1`` in a path is not recognised (as on the Hub).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from . import admin, files, lfs, repos, xet
from .protocol import Reply, Request, Route

if TYPE_CHECKING:
    from .hub import Hub

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
Handler = Callable[["Hub", Request], Reply]


@dataclass(frozen=True)
class RouteSpec:
    name: str
    pattern: tuple[str, ...]
    methods: frozenset[str]
    handler: Handler
    hub_auth: bool = True  # False: credentials are in a signature or a CAS token instead
    api: bool = True  # under /api/ (else a file route, after the repo type prefix)


def _spec(name: str, pattern: str, methods: str, handler: Handler, *, hub_auth: bool = True,
          api: bool = True) -> RouteSpec:
    return RouteSpec(name, tuple(pattern.split("/")), frozenset(methods.split()), handler,
                     hub_auth, api)


REPO = "api/{type}/{ns}/{name}"
TABLE: tuple[RouteSpec, ...] = (
    # account and repos
    _spec("whoami", "api/whoami-v2", "GET", repos.whoami),
    _spec("validate_yaml", "api/validate-yaml", "POST", repos.validate_yaml),
    _spec("repo_create", "api/repos/create", "POST", repos.create),
    _spec("repo_delete", "api/repos/delete", "DELETE", repos.delete),
    _spec("repo_info", REPO, "GET", repos.info),
    _spec("repo_info", f"{REPO}/revision/{{rev}}", "GET", repos.info),
    _spec("repo_settings", f"{REPO}/settings", "PUT", repos.settings),
    _spec("refs", f"{REPO}/refs", "GET", repos.refs),
    _spec("branch", f"{REPO}/branch/{{rev}}", "POST DELETE", repos.branch),
    _spec("commits", f"{REPO}/commits/{{rev}}", "GET", repos.commits),
    _spec("discussions", f"{REPO}/discussions", "POST", repos.create_discussion),
    _spec("discussion", f"{REPO}/discussions/{{id}}", "GET", repos.discussion),
    # listing
    _spec("tree", f"{REPO}/tree/{{rev}}/{{path*}}", "GET", repos.tree),
    _spec("paths_info", f"{REPO}/paths-info/{{rev}}", "POST", repos.paths_info),
    # upload: preupload, LFS or Xet, then one NDJSON commit
    _spec("preupload", f"{REPO}/preupload/{{rev}}", "POST", repos.preupload),
    _spec("commit", f"{REPO}/commit/{{rev}}", "POST", repos.commit),
    _spec("lfs_batch", "{ns}/{name.git}/info/lfs/objects/batch", "POST", lfs.batch, api=False),
    _spec("lfs_verify", "{ns}/{name.git}/info/lfs/objects/verify", "POST", lfs.verify,
          api=False),
    _spec("lfs_upload", "_lfs/upload/{id}", "PUT", lfs.upload, hub_auth=False),
    _spec("xet_write_token", f"{REPO}/xet-write-token/{{rev}}", "GET", xet.write_token),
    _spec("xet_read_token", f"{REPO}/xet-read-token/{{rev}}", "GET", xet.read_token),
    # download
    _spec("resolve", "{ns}/{name}/resolve/{rev}/{path+}", "GET HEAD", files.resolve, api=False),
    _spec("cas_reconstruction_v1", "_xet/v1/reconstructions/{id}", "GET", xet.reconstruction,
          hub_auth=False),
    _spec("cas_reconstruction_v2", "_xet/v2/reconstructions/{id}", "GET", xet.reconstruction,
          hub_auth=False),
    _spec("cas_xorb", "_xet/xorbs/{id}", "GET", xet.xorb, hub_auth=False),
    # test-only
    _spec("admin", "_admin/{path+}", "GET POST DELETE", admin.handle),
)
ROUTES: dict[str, RouteSpec] = {spec.name: spec for spec in TABLE}  # same handler per name


def _match(pattern: tuple[str, ...], seg: list[str]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for i, part in enumerate(pattern):
        if part in ("{path*}", "{path+}"):
            rest = seg[i:]
            if part == "{path+}" and not rest:
                return None
            out["path"] = "/".join(rest)
            return out
        if i >= len(seg):
            return None
        value = seg[i]
        if part == "{type}":
            if value not in REPO_TYPES:
                return None
            out["type"] = REPO_TYPES[value]
        elif part == "{name.git}":
            if not value.endswith(".git"):
                return None
            out["name"] = value[:-4]
        elif part.startswith("{"):
            out[part[1:-1]] = value
        elif part != value:
            return None
    return out if len(seg) == len(pattern) else None


def parse_route(raw_path: str) -> Route:
    """Map a raw (still percent-encoded) URL path to a route; ``Route("unknown")`` (a 404)
    for anything else, which the clients tolerate where they probe optional files."""
    seg = [unquote(s) for s in raw_path.rstrip("/").split("/")[1:]]
    file_type, file_seg = "model", seg
    if seg[:1] in (["datasets"], ["spaces"]):
        file_type, file_seg = REPO_TYPES[seg[0]], seg[1:]
    for spec in TABLE:
        found = _match(spec.pattern, seg if spec.api else file_seg)
        if found is None:
            continue
        repo_type = found.get("type") or (None if spec.api else file_type)
        repo_id = f"{found['ns']}/{found['name']}" if "ns" in found else None
        path = found.get("path") or found.get("id") or ""
        return Route(spec.name, repo_type if repo_id else None, repo_id, found.get("rev"), path)
    return Route("unknown")
