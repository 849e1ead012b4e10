"""A local stand-in for the parts of the Hugging Face Hub that our clients use.

A standard-library HTTP server (plus ``hf_xet``, for the Xet bridge) that speaks enough of the
Hub protocol for ``huggingface_hub`` 2.4, ``hf_xet`` 1.8 and ``datasets`` 5.2 to create repos,
upload over **Xet** (what every client with hf_xet installed uses) or **LFS**
(``HF_HUB_DISABLE_XET=1``), list, download (whole files, ranges) and load datasets, also
streaming. Tests point the real clients at it with ``HF_ENDPOINT=http://127.0.0.1:PORT``.

Run it standalone (the URL is printed on start; Ctrl-C stops it)::

    python -m tests.hubserver --storage ./hub-storage --token hf_xxx          # from the repo root
    python -m hubserver --storage ./hub-storage --token hf_xxx --no-xet  # tests/ on sys.path

or in-process::

    with HubServer(storage=tmp_path, tokens=["hf_xxx"]) as server:
        ...  # server.url, server.token, server.faults, server.stats(...)

Modules, one owner each: ``routes`` (the route table), ``hub`` (state, auth, accounting,
dispatch), ``repos`` (repo API, listings, preupload, commit), ``lfs`` (LFS batch and pre-signed
uploads), ``xet`` (Xet tokens, CAS folder, CAS read API, bridge), ``files`` (resolve),
``store`` (typed records on disk), ``faults``, ``admin`` (test helpers), ``protocol``
(requests, replies, errors), ``server`` (HTTP plumbing, ``HubServer``, ``HubAdminClient``).

Upload, as huggingface_hub 2.4 does it
--------------------------------------
``create_commit`` (and ``upload_folder`` without hf_xet) calls ``POST /api/validate-yaml`` for
a README.md, ``POST /api/{type}s/{repo}/preupload/{rev}`` (regular vs lfs mode per file, and
the remote ``oid``: unchanged files are dropped), then moves the "lfs" files:

* over Xet: ``GET .../xet-write-token/{rev}``, after which hf_xet writes xorbs and shards into
  this server's CAS folder itself (``local://``, see xet.py);
* over LFS: ``POST /{prefix}{repo}.git/info/lfs/objects/batch``, ``PUT`` to each pre-signed
  ``upload`` href (``...&sig=``), ``POST`` to ``verify``;

and one NDJSON ``POST .../commit/{rev}`` (``lfsFile`` lines carry sha256 and size only);
when nothing changed, ``GET .../revision/{rev}`` instead. With hf_xet, ``upload_folder`` runs
a pipeline of several such commits (each batch: preupload, Xet upload, commit), and with
``create_pr=True`` opens the PR first (``POST .../discussions``).

Endpoints
---------
``{type}s`` is models, datasets or spaces; ``{prefix}`` is "" for models, else "datasets/"...
The route table in routes.py lists them all: whoami, validate-yaml, repo create/delete, repo
info (``?blobs=true``), settings (gated, visibility), refs (``?include_prs=1``), branch
create/delete, commits, discussions (pull requests only), tree (``?recursive=&expand=``),
paths-info, preupload, commit (``?create_pr=1``), LFS batch/upload/verify, Xet write/read
tokens, resolve (``GET|HEAD``, ``Range``), the CAS read API under ``/_xet``, and the test-only
``/_admin/{faults,stats,reset-stats,requests,corrupt,remove-file}``. Anything else answers
404, which the clients tolerate where they probe optional files.

Branches and pull requests
--------------------------
Every ``{rev}`` that is read is a branch, a pull request's ``refs/pr/N`` or a commit id (full,
or >= 7 hex chars), quoted with ``safe=""`` (``refs%2Fpr%2F1``). ``create_branch`` posts
``{"startingPoint": rev}`` (an existing name: 409, which ``exist_ok=True`` swallows; invalid
or ``refs/...`` names: 400); ``delete_branch`` (main: 403, unknown: 404). A commit goes to a
branch or an open PR's ref; ``create_pr=1`` opens PR N (1, 2... per repo) against the branch,
applied on its head (or ``parentCommit``), answered with ``pullRequestUrl``
(``.../discussions/N``), from which ``CommitInfo`` derives ``pr_revision`` and ``pr_num``.

What follows the Hub and what is simplified
-------------------------------------------
As far as the clients can tell (read in their source, checked by running them) this follows
the Hub: URL layout; JSON shapes; errors as JSON ``{"error": ...}`` with ``X-Error-Message``
and ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``); 401 for a
bad token; 404 for someone else's private repo; 409 on re-creation; ``gated`` false, "auto"
or "manual" in repo info; LFS batch answers without ``actions`` for stored objects;
pre-signed, expiring upload and xorb URLs; preupload ``oid`` (sha256 for LFS/Xet files, git
blob sha1 for regular ones); tree/paths-info entries of Xet files carry ``xetHash`` *and*
``lfs`` (Xet files are LFS files in git); ``ETag``, ``X-Repo-Commit``,
``X-Linked-Etag``/``X-Linked-Size``, ``X-Xet-Hash`` and the ``xet-auth`` Link on resolve;
206/416 for ranges; Xet token routes (JSON and ``X-Xet-*`` headers); the Xet CAS read API
(v1 and v2 reconstructions); a first commit holding ``.gitattributes``; the storage-limit
403 wording (``faults.STORAGE_LIMIT_MESSAGE``).

Simplified, on purpose:

* Permissions: a valid token maps to a user. Anyone may create repos in any namespace; a repo
  is readable by everyone if public, only by its creator if private, writable only by its
  creator; gating is recorded and reported, not enforced. By default *every* request needs a
  valid token (``allow_anonymous_read=True`` serves public repos anonymously, as the Hub does).
* Resolve serves the bytes itself (200/206) where the Hub redirects to its CDN (LFS) or its
  Xet bridge; Xet files are read for it through hf_xet, from this server's own CAS API.
* Xet uploads use hf_xet's local mode (``casUrl`` ``local://``): the client writes the CAS
  folder directly, so there is no CAS upload API, no global-dedup API, and two processes
  cannot upload at the same time (hf_xet locks the folder). Reads go over HTTP.
* Storage is global and content-addressed: an LFS object or Xet chunk uploaded for one repo
  is "already present" for all; regular files live in the LFS object store.
* Upload mode: LFS if size >= ``lfs_threshold`` (10 MiB, near the Hub's 10 MB), the name has a
  data suffix (parquet, arrow, nii.gz...) or the 512-byte sample has a NUL byte. The
  ``.gitattributes`` file is not parsed, ``.gitignore`` is ignored (``shouldIgnore`` is always
  false) and README metadata is not schema-validated.
* Commit ids are random sha1s, not git objects. No branch protection; a deleted branch's
  commits stay reachable by id.
* Pull requests are refs with a title: no comments, status changes or merging; every PR
  stays open (or draft) and accepts commits. Plain discussions are not modelled, and PR
  numbers do not count them, as the Hub's do.
* No tags, ``refs/convert/...``, multipart LFS, pagination, multi-range xorb reads, or
  dataset-viewer (``datasets-server``) API.

Test helpers (not part of the Hub): fault injection (``server.faults``: status with
Retry-After, storage quota, delays that stall a route, dropped connections), per-repo counters
(``server.stats(...)``, with the bytes that reached storage and those sent back), a request
log, server-side corruption and removal of files. ``HubAdminClient`` offers the same methods
for a server running in another process. Tokens are never logged nor echoed back.
"""

from .faults import STORAGE_LIMIT_MESSAGE, Fault, FaultSet
from .hub import DEFAULT_LFS_THRESHOLD, Hub
from .server import HubAdminClient, HubServer
from .store import DEFAULT_USER, Store

__all__ = [
    "DEFAULT_LFS_THRESHOLD",
    "DEFAULT_USER",
    "STORAGE_LIMIT_MESSAGE",
    "Fault",
    "FaultSet",
    "Hub",
    "HubAdminClient",
    "HubServer",
    "Store",
]
