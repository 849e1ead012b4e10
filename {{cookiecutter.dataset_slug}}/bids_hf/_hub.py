"""Publishing a verified staged folder to the Hub, and verifying the remote copy.

* Only a folder that passed local verification is uploaded (``.bids_hf/verified.json``
  holds the sha256 of the manifest it verified; a rebuilt folder must verify again), and
  each file is hashed again right before it is sent: one that no longer matches the
  manifest stops the run as a failed check, before anything is sent.
* The repo is created private unless asked otherwise; an existing repo's visibility is
  reported, never changed. The token comes from ``HF_TOKEN`` or the cached login and is
  never printed; ``HF_ENDPOINT`` is honoured (huggingface_hub reads it).
* One commit holds every changed file and deletes shards of older plans from ``data/``, so
  the repo never shows two plans at once. Files already on the Hub with the same content
  are not sent; LFS objects that landed before an interruption are skipped by the Hub, so
  re-running the same command resumes.
* Every request is bounded in time and retried when the failure is transient (``_http``);
  a permanent one (401, 403, 404) stops the run at once with what to do.
* Remote verification compares every manifest file with the Hub's file metadata (size and
  LFS sha256, or the git blob id of small files) and, with ``full=True``, downloads and
  hashes the bytes (streamed, nothing kept), which also catches corruption behind intact
  metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from ._errors import ChecksFailed, InputError
from ._http import RetryPolicy, with_retries
from ._plan import data_folder
from ._results import ValidationCheck, ValidationResult
from ._stage import retarget_card
from ._state import Manifest, is_verified
from ._util import first_lines, natural_key

# -- publish --------------------------------------------------------------------------------------


@dataclass
class PublishResult:
    repo_id: str
    url: str
    private: bool
    commit: str | None  # None when nothing had to change
    revision: str  # where the files are now: the branch, or the pull request's ref
    uploaded: list[str]
    unchanged: list[str]
    deleted: list[str]


def publish(out: Path, repo_id: str, *, private: bool = True, revision: str = "main",
            create_pr: bool = False, policy: RetryPolicy | None = None,
            say: Callable[[str], None] = print, api: HfApi | None = None) -> PublishResult:
    """Upload a staged folder that passed verification; resumable by calling it again."""
    policy = policy or RetryPolicy()
    if not is_verified(out):
        # A usage mistake (exit 2), not the Hub's doing.
        raise InputError(f"{out} has not passed verification since it was last staged. Run "
                         "push.py without --repo-id first (or with it: it verifies before "
                         "uploading).")
    if retarget_card(out, repo_id):
        say(f"the card now names {repo_id} (it was staged for another repo id)")
    manifest = Manifest.read(out)
    api = api or HfApi()
    repo = with_retries("creating the repo", lambda: api.create_repo(
        repo_id, repo_type="dataset", private=private, exist_ok=True), policy, say)
    info = with_retries("reading the repo", lambda: api.dataset_info(repo_id), policy, say)
    if bool(info.private) != private:
        say(f"note: {repo_id} already exists and is {'private' if info.private else 'PUBLIC'}; "
            "its visibility was not changed.")
    if revision != "main" and not create_pr:
        with_retries("creating the branch", lambda: api.create_branch(
            repo_id, repo_type="dataset", branch=revision, exist_ok=True), policy, say)
    remote = with_retries("listing the repo", lambda: _remote_files(api, repo_id, revision),
                          policy, say)
    plan = _changes(out, manifest, remote)
    result = PublishResult(repo_id=repo_id, url=str(repo), private=bool(info.private),
                           commit=None, revision=revision, uploaded=plan.uploaded,
                           unchanged=plan.unchanged, deleted=plan.deleted)
    if create_pr:
        found = with_retries("reading pull requests", lambda: _matching_pull_request(
            api, repo_id, out, manifest), policy, say)
        if found is not None:
            say(f"pull request {found[0]} already holds exactly this upload; not opening another")
            result.revision, result.commit = found
            result.uploaded, result.deleted = [], []
            return result
    if not plan.needed:
        _apply_gating(api, repo_id, manifest, policy, say)
        return result
    operations = _operations(out, manifest, plan)
    say(f"uploading {len(plan.uploaded)} file(s) ({_size(out, plan.uploaded) / 1e9:.2f} GB), "
        f"deleting {len(plan.deleted)} stale file(s), {len(plan.unchanged)} already on the Hub")
    message = (f"Publish {manifest.dataset}: {len(manifest.shards)} shard(s), "
               f"plan {manifest.plan_fingerprint[:12]}")
    attempts = 0

    def commit() -> tuple[str | None, str]:
        """One commit attempt. After a failed one, first find out whether it landed anyway
        (a reply lost after the Hub applied it): replaying it would open a second pull
        request, or delete files that are already gone (a 404 that would abort the run)."""
        nonlocal attempts, operations
        attempts += 1
        if attempts > 1:
            if create_pr:
                found = _matching_pull_request(api, repo_id, out, manifest)
                if found is not None:
                    return found[1], found[0]
            else:
                now = _changes(out, manifest, _remote_files(api, repo_id, revision))
                if not now.needed:
                    return api.dataset_info(repo_id, revision=revision).sha, revision
                operations = _operations(out, manifest, now)  # fresh objects: preupload again
        done = api.create_commit(repo_id, operations, repo_type="dataset", revision=revision,
                                 create_pr=create_pr, commit_message=message)
        return done.oid, done.pr_revision or revision

    result.commit, result.revision = with_retries("committing", commit, policy, say)
    _apply_gating(api, repo_id, manifest, policy, say)
    return result


def _apply_gating(api: HfApi, repo_id: str, manifest: Manifest, policy: RetryPolicy,
                  say: Callable[[str], None]) -> None:
    """Gate the repo when the card asks for it (the YAML fields alone do not switch it on)."""
    if not manifest.gated:
        return
    info = with_retries("reading the repo", lambda: api.dataset_info(repo_id), policy, say)
    if info.gated in ("auto", "manual"):
        return
    with_retries("gating the repo", lambda: api.update_repo_settings(
        repo_id, repo_type="dataset", gated="auto"), policy, say)
    say(f"gated {repo_id}: people must accept its terms before they can download it")


@dataclass
class _Changes:
    """What one commit must do to make the Hub match the manifest."""

    uploaded: list[str]
    unchanged: list[str]
    deleted: list[str]

    @property
    def needed(self) -> bool:
        return bool(self.uploaded or self.deleted)


def _changes(out: Path, manifest: Manifest, remote: dict[str, RemoteFile]) -> _Changes:
    uploaded: list[str] = []
    unchanged: list[str] = []
    for name, entry in manifest.files.items():
        (unchanged if _same(remote.get(name), out / name, entry) else uploaded).append(name)
    return _Changes(uploaded, unchanged, _stale(manifest, remote))


def _stale(manifest: Manifest, remote: dict[str, RemoteFile]) -> list[str]:
    """Parquet files on the Hub that the manifest does not list (an older plan's)."""
    return sorted(p for p in remote
                  if p.startswith(f"{data_folder()}/") and p not in manifest.files)


def _operations(out: Path, manifest: Manifest, changes: _Changes) -> list[Any]:
    """The commit's operations. Each file to send is hashed here, right before it is sent
    (huggingface_hub hashes it for the upload anyway): one that no longer has the sha256 it
    was verified with is refused, so only verified bytes reach the Hub."""
    operations: list[Any] = []
    for name in changes.uploaded:
        op = CommitOperationAdd(path_in_repo=name, path_or_fileobj=out / name)
        if op.upload_info.sha256.hex() != manifest.files[name]["sha256"]:
            # The check "staged files match manifest" failing at the last moment: exit 1.
            raise ChecksFailed(
                f"{out / name} changed since it was verified (its sha256 is not the manifest's); "
                "nothing was uploaded. Stage again (push.py --bids-root ... --out ...): the "
                "verification rebuilds or re-checks it.", None)
        operations.append(op)
    return operations + [CommitOperationDelete(path_in_repo=p) for p in changes.deleted]


def _matching_pull_request(api: HfApi, repo_id: str, out: Path, manifest: Manifest,
                           newest: int = 20) -> tuple[str, str] | None:
    """(ref, head commit) of an open pull request that already holds exactly the manifest."""
    refs = api.list_repo_refs(repo_id, repo_type="dataset", include_pull_requests=True)
    pulls = sorted(refs.pull_requests or [], key=lambda r: natural_key(r.ref), reverse=True)
    for pull in pulls[:newest]:
        if not _changes(out, manifest, _remote_files(api, repo_id, pull.ref)).needed:
            return pull.ref, pull.target_commit
    return None


def _size(out: Path, names: list[str]) -> int:
    return sum((out / n).stat().st_size for n in names)


@dataclass(frozen=True)
class RemoteFile:
    size: int
    sha256: str | None  # LFS files
    blob_id: str | None  # git blob id (small files)


def _remote_files(api: HfApi, repo_id: str, revision: str) -> dict[str, RemoteFile]:
    try:
        entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision,
                                     recursive=True, expand=True)
        return {e.path: RemoteFile(e.size, e.lfs.sha256 if e.lfs else None, e.blob_id)
                for e in entries if isinstance(e, RepoFile)}
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code == 404 and revision != "main":
            return {}  # a branch that does not exist yet
        raise


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _same(remote: RemoteFile | None, local: Path, entry: dict[str, Any]) -> bool:
    if remote is None or remote.size != entry["size"]:
        return False
    if remote.sha256 is not None:
        return bool(remote.sha256 == entry["sha256"])
    return remote.blob_id == _git_blob_id(local)


# -- remote verification --------------------------------------------------------------------------


def verify_remote(out: Path, repo_id: str, *, revision: str = "main", full: bool = False,
                  policy: RetryPolicy | None = None, say: Callable[[str], None] = print,
                  api: HfApi | None = None) -> ValidationResult:
    """The Hub copy against the manifest: every file present with its size and hash, no
    stale shards under ``data/``, the card present; ``full`` also hashes the bytes."""
    policy = policy or RetryPolicy()
    api = api or HfApi()
    manifest = Manifest.read(out)
    remote = with_retries("listing the repo", lambda: _remote_files(api, repo_id, revision),
                          policy, say)
    result = ValidationResult()
    problems = []
    for name, entry in manifest.files.items():
        found = remote.get(name)
        if found is None:
            problems.append(f"{name}: missing on the Hub")
        elif not _same(found, out / name, entry):
            problems.append(f"{name}: the Hub's copy differs (size {found.size}, manifest "
                            f"{entry['size']}; content hash differs)")
    result.add(ValidationCheck(
        name="remote files match manifest", expected=len(manifest.files),
        actual=len(manifest.files) - len(problems), passed=not problems,
        details="\n".join(problems) + ("\nRerun the same command to upload them again."
                                       if problems else "")))
    stale = _stale(manifest, remote)
    result.add(ValidationCheck(
        name="no stale shards on the Hub", expected=0, actual=len(stale), passed=not stale,
        details=first_lines(stale, 20) + ("\nRerun the same command: the next commit deletes "
                                          "them." if stale else "")))
    if manifest.gated:
        info = with_retries("reading the repo", lambda: api.dataset_info(repo_id), policy, say)
        gated = info.gated in ("auto", "manual")
        result.add(ValidationCheck(
            name="repo gated as the card asks", expected="gated", actual=str(info.gated),
            passed=gated, details="" if gated else (
                "The repo is not gated: rerun the same command (it gates the repo), or switch "
                "gating on in the repo's settings.")))
    if full:
        def downloaded_sha256(name: str) -> str:
            return with_retries(f"downloading {name}",
                                lambda: _remote_sha256(repo_id, name, revision), policy, say)

        bad = [name for name, entry in manifest.files.items()
               if name in remote and downloaded_sha256(name) != entry["sha256"]]
        result.add(ValidationCheck(
            name="remote bytes hash to the manifest", expected=len(manifest.files),
            actual=len(manifest.files) - len(bad), passed=not bad,
            details="\n".join(f"{n}: downloaded bytes do not match its sha256" for n in bad)
            + ("\nRe-upload them: delete them on the Hub and rerun the same command."
               if bad else "")))
    return result


def _remote_sha256(repo_id: str, name: str, revision: str) -> str:
    url = hf_hub_url(repo_id, name, repo_type="dataset", revision=revision)
    digest = hashlib.sha256()
    with get_session().stream("GET", url, headers=build_hf_headers()) as response:
        hf_raise_for_status(response)  # an HfHubHTTPError, which with_retries understands
        for block in response.iter_bytes(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_load(repo_id: str, split: str, image_columns: dict[str, bool],
               revision: str = "main") -> ValidationCheck:
    """``datasets.load_dataset(repo, streaming=True)``: the first row reads and an image decodes."""
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, split=split, streaming=True, revision=revision)
        row = next(iter(ds))
        decoded = _first_image(row, image_columns)
        shape = tuple(decoded.shape) if decoded is not None else None
    except Exception as err:  # noqa: BLE001  (the failure is the finding)
        return ValidationCheck(name="load_dataset from the Hub", expected="first row decodes",
                               actual="failed", passed=False,
                               details=f"{type(err).__name__}: {str(err)[:300]}")
    return ValidationCheck(name="load_dataset from the Hub", expected="first row decodes",
                           actual=f"{row.get('subject_id')} image {shape}",
                           passed=shape is not None,
                           details="" if shape else "the first row holds no image")


def _first_image(row: dict[str, Any], image_columns: dict[str, bool]) -> Any:
    for column, is_list in image_columns.items():
        value = row.get(column)
        images: Iterator[Any] = iter(value or []) if is_list else iter([value] if value else [])
        for image in images:
            return image
    return None
