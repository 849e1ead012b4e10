"""Tests of the local Hub stand-in, driven through the real huggingface_hub and datasets clients."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_fixtures import HTTPX2_UPLOAD_WARNING, HubEnv
from hub_server import HubAdminClient, HubServer, Store
from huggingface_hub import (
    CommitOperationAdd,
    GitRefInfo,
    HfApi,
    HfFileSystem,
    hf_hub_download,
    hf_hub_url,
)
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO = "test-org/bids-demo"
PARQUET = "data/train-00000-of-00001.parquet"
N_ROWS = 20_000  # ~250 kB of parquet: big enough to cut an upload in the middle


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A dataset folder as the pipeline produces it: a card plus one parquet shard."""
    root = tmp_path / "export"
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: cc0-1.0\n---\n# Demo\n")
    ids = [f"sub-{i:05d}" for i in range(N_ROWS)]
    pq.write_table(pa.table({"participant_id": ids, "age": list(range(N_ROWS))}), root / PARQUET)
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(folder: Path, api: HfApi | None = None) -> None:
    (api or HfApi()).upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder)


def routes(server: HubServer) -> list[tuple[str, str, object]]:
    return [(r["method"], r["route"], r["status"]) for r in server.requests()]


def test_fixture_points_clients_at_server(hub_env: HubEnv) -> None:
    import datasets
    from huggingface_hub.utils._runtime import is_xet_available

    url = hf_hub_url(REPO, "README.md", repo_type="dataset")
    assert url.startswith(hub_env.url + "/datasets/")
    assert hub_env.url == datasets.config.HF_ENDPOINT
    assert not is_xet_available()
    assert HfApi().whoami()["name"] == "test-user"


def test_create_repo_visibility_and_exist_ok(hub_server: HubServer, hub_env: HubEnv) -> None:
    api = HfApi()
    url = api.create_repo(REPO, repo_type="dataset", private=True)
    assert url.repo_id == REPO and url.repo_type == "dataset"
    api.create_repo("test-org/public", repo_type="dataset", private=False)
    assert api.repo_info(REPO, repo_type="dataset").private is True
    assert api.repo_info("test-org/public", repo_type="dataset").private is False

    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 409
    api.create_repo(REPO, repo_type="dataset", exist_ok=True)

    # Another user sees neither the private repo nor that it exists (404, like the Hub).
    hub_server.add_token("hf_other_user_token", "someone-else")
    other = HfApi(token="hf_other_user_token")
    with pytest.raises(RepositoryNotFoundError) as exc:
        other.list_repo_files(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 404
    assert other.list_repo_files("test-org/public", repo_type="dataset") == [".gitattributes"]


def test_upload_folder_then_list_and_download(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    upload(folder)

    # The legacy (non-Xet) upload path, one call each.
    calls = [(m, r) for m, r, _ in routes(hub_server) if r not in ("validate_yaml", "repo_create")]
    assert calls == [("POST", "preupload"), ("POST", "lfs_batch"), ("PUT", "lfs_upload"),
                     ("POST", "lfs_verify"), ("POST", "commit")]  # fmt: skip

    files = api.list_repo_files(REPO, repo_type="dataset")
    assert files == [".gitattributes", "README.md", PARQUET]
    size, digest = (folder / PARQUET).stat().st_size, sha256(folder / PARQUET)

    infos = api.get_paths_info(REPO, [PARQUET, "README.md"], repo_type="dataset")
    parquet_info, readme_info = infos
    lfs = parquet_info.lfs
    assert lfs is not None and (lfs.sha256, lfs.size, parquet_info.size) == (digest, size, size)
    assert readme_info.lfs is None and readme_info.blob_id  # regular file: git blob oid only

    listing = api.list_repo_tree(REPO, repo_type="dataset", recursive=True, expand=True)
    tree = {entry.path: entry for entry in listing}
    assert set(tree) == {".gitattributes", "README.md", "data", PARQUET}
    assert tree[PARQUET].lfs.sha256 == digest and tree[PARQUET].last_commit is not None
    assert [c.title for c in api.list_repo_commits(REPO, repo_type="dataset")] == [
        "Upload folder using huggingface_hub", "initial commit"]

    local = Path(hf_hub_download(REPO, PARQUET, repo_type="dataset"))
    assert local.read_bytes() == (folder / PARQUET).read_bytes()

    # Range reads, as HfFileSystem does when datasets streams parquet.
    hub_server.reset_stats()
    chunk = HfFileSystem().cat_file(f"datasets/{REPO}/{PARQUET}", start=100, end=150)
    assert chunk == (folder / PARQUET).read_bytes()[100:150]
    assert ("GET", "resolve", 206) in routes(hub_server)


def test_rerun_does_not_resend_lfs_objects(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    upload(folder)
    hub_server.reset_stats()

    upload(folder)

    stats = hub_server.stats(REPO)
    assert stats["lfs_objects_skipped"] == 1
    assert "lfs_objects_uploaded" not in stats and "upload_bytes_received" not in stats
    assert "commits" not in stats  # nothing changed: the client skips the commit
    assert ("PUT", "lfs_upload") not in [(m, r) for m, r, _ in routes(hub_server)]


def test_429_with_retry_after_is_retried(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    hub_server.faults.add("status", status=429, retry_after=1, method="POST", path=r"/preupload/")

    started = time.monotonic()
    upload(folder)

    # huggingface_hub sleeps Retry-After + 1 s before retrying.
    assert time.monotonic() - started >= 2
    preuploads = [s for m, r, s in routes(hub_server) if r == "preupload"]
    assert preuploads == [429, 200]
    assert HfApi().list_repo_files(REPO, repo_type="dataset")[-1] == PARQUET


def test_connection_dropped_mid_lfs_upload_is_retried(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    hub_server.faults.add("drop", after_bytes=50_000, method="PUT", path=r"^/_lfs/upload/")

    upload(folder)  # http_backoff retries the PUT on the broken connection

    size = (folder / PARQUET).stat().st_size
    stats = hub_server.stats(REPO)
    assert stats["upload_bytes_received"] == 50_000 + size
    assert stats["lfs_objects_uploaded"] == 1
    assert [s for m, r, s in routes(hub_server) if r == "lfs_upload"] == ["dropped", 200]


def test_connection_dropped_on_commit_then_rerun_completes(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    # The commit POST is not retried by huggingface_hub: the whole upload_folder call fails.
    hub_server.faults.add("drop", after_bytes=10, method="POST", path=r"/commit/")
    with pytest.raises(httpx2.TransportError):
        upload(folder)
    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes"]
    assert hub_server.stats(REPO)["lfs_objects_uploaded"] == 1  # the LFS bytes did land

    hub_server.reset_stats()
    upload(folder)

    files = api.list_repo_files(REPO, repo_type="dataset")
    assert files == [".gitattributes", "README.md", PARQUET]
    stats = hub_server.stats(REPO)
    assert stats["commits"] == 1 and stats["lfs_objects_skipped"] == 1
    assert "upload_bytes_received" not in stats  # nothing re-sent


def test_lost_commit_reply_the_commit_landed(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    hub_server.faults.add("drop", on_response=True, method="POST", path=r"/commit/")
    with pytest.raises(httpx2.TransportError):
        upload(folder)
    # Handled, then cut: the client saw an error, yet the commit is on the Hub.
    assert ("POST", "commit", "dropped") in routes(hub_server)
    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", "README.md",
                                                              PARQUET]
    assert hub_server.stats(REPO)["commits"] == 1


def test_wrong_token_gives_401_without_leaking_it(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    HfApi().create_repo(REPO, repo_type="dataset", private=True)
    bad_token = "hf_definitely_not_valid_0123456789"
    api = HfApi(token=bad_token)

    for call in (
        lambda: api.list_repo_files(REPO, repo_type="dataset"),
        lambda: api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder),
        lambda: api.hf_hub_download(REPO, "README.md", repo_type="dataset"),
    ):
        with pytest.raises(HfHubHTTPError) as exc:
            call()
        assert exc.value.response.status_code == 401
        assert bad_token not in str(exc.value) and bad_token not in repr(exc.value)
        assert hub_server.token not in str(exc.value)
    assert bad_token not in str(hub_server.requests())


def test_load_dataset_regular_and_streaming(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    import datasets

    HfApi().create_repo(REPO, repo_type="dataset", private=True)
    upload(folder)
    expected = pq.read_table(folder / PARQUET).to_pylist()

    ds = datasets.load_dataset(REPO, split="train")
    assert ds.num_rows == N_ROWS and ds[0] == expected[0] and ds[-1] == expected[-1]

    hub_server.reset_stats()
    streamed = list(datasets.load_dataset(REPO, split="train", streaming=True))
    assert streamed == expected
    assert ("GET", "resolve", 206) in routes(hub_server)  # parquet read through Range requests


def test_branches_create_upload_list_and_delete(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    main_sha = api.dataset_info(REPO).sha
    api.create_branch(REPO, repo_type="dataset", branch="staging")
    api.create_branch(REPO, repo_type="dataset", branch="staging", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_branch(REPO, repo_type="dataset", branch="staging")
    assert exc.value.response.status_code == 409
    with pytest.raises(BadRequestError):  # the Hub's own namespace
        api.create_branch(REPO, repo_type="dataset", branch="refs/pr/5")

    api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder, revision="staging")

    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes"]
    staged = api.list_repo_files(REPO, repo_type="dataset", revision="staging")
    assert staged == [".gitattributes", "README.md", PARQUET]
    staging_sha = api.dataset_info(REPO, revision="staging").sha
    assert staging_sha != main_sha == api.dataset_info(REPO).sha
    commits = api.list_repo_commits(REPO, repo_type="dataset", revision="staging")
    assert [c.commit_id for c in commits] == [staging_sha, main_sha]
    refs = api.list_repo_refs(REPO, repo_type="dataset")
    assert {(b.name, b.ref, b.target_commit) for b in refs.branches} == {
        ("main", "refs/heads/main", main_sha), ("staging", "refs/heads/staging", staging_sha)}
    local = hf_hub_download(REPO, PARQUET, repo_type="dataset", revision="staging")
    assert Path(local).read_bytes() == (folder / PARQUET).read_bytes()
    with pytest.raises(HfHubHTTPError) as exc:  # not on main
        hf_hub_download(REPO, PARQUET, repo_type="dataset")
    assert exc.value.response.status_code == 404

    # From a commit id; a slash in the name travels quoted.
    api.create_branch(REPO, repo_type="dataset", branch="old/base", revision=main_sha)
    assert api.list_repo_files(REPO, repo_type="dataset", revision="old/base") == [".gitattributes"]
    api.delete_branch(REPO, repo_type="dataset", branch="old/base")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(REPO, repo_type="dataset", revision="old/base")
    with pytest.raises(RevisionNotFoundError):  # commits never create branches
        api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder, revision="nope")
    with pytest.raises(HfHubHTTPError) as exc:
        api.delete_branch(REPO, repo_type="dataset", branch="main")
    assert exc.value.response.status_code == 403


def test_pull_requests_are_refs_based_on_their_target_branch(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    api.upload_file(path_or_fileobj=folder / "README.md", path_in_repo="README.md",
                    repo_id=REPO, repo_type="dataset")
    main_sha = api.dataset_info(REPO).sha

    pr = api.create_commit(REPO, [CommitOperationAdd(PARQUET, folder / PARQUET)],
                           commit_message="Add a shard", repo_type="dataset", create_pr=True)

    assert (pr.pr_revision, pr.pr_num) == ("refs/pr/1", 1)
    assert pr.pr_url == f"{hub_env.url}/datasets/{REPO}/discussions/1"
    assert pr.repo_url.repo_id == REPO
    assert api.dataset_info(REPO).sha == main_sha  # main is untouched
    assert PARQUET not in api.list_repo_files(REPO, repo_type="dataset")
    in_pr = api.list_repo_files(REPO, repo_type="dataset", revision=pr.pr_revision)
    assert in_pr == [".gitattributes", "README.md", PARQUET]  # based on main's head
    assert api.dataset_info(REPO, revision=pr.pr_revision).sha == pr.oid
    info = api.get_paths_info(REPO, [PARQUET], repo_type="dataset", revision=pr.pr_revision)
    assert info[0].lfs is not None and info[0].lfs.sha256 == sha256(folder / PARQUET)
    hub_server.reset_stats()
    local = hf_hub_download(REPO, PARQUET, repo_type="dataset", revision=pr.pr_revision)
    assert Path(local).read_bytes() == (folder / PARQUET).read_bytes()
    assert any("/resolve/refs%2Fpr%2F1/" in r["path"] for r in hub_server.requests())
    chunk = HfFileSystem().cat_file(f"datasets/{REPO}@refs/pr/1/{PARQUET}", start=10, end=30)
    assert chunk == (folder / PARQUET).read_bytes()[10:30]

    refs = api.list_repo_refs(REPO, repo_type="dataset", include_pull_requests=True)
    assert [b.name for b in refs.branches] == ["main"]
    assert refs.pull_requests == [GitRefInfo("refs/pr/1", "refs/pr/1", pr.oid)]
    assert api.list_repo_refs(REPO, repo_type="dataset").pull_requests is None

    # More commits on the open PR; a second PR against another branch gets number 2.
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id=REPO,
                    repo_type="dataset", revision="refs/pr/1")
    assert "notes.txt" in api.list_repo_files(REPO, repo_type="dataset", revision="refs/pr/1")
    api.create_branch(REPO, repo_type="dataset", branch="staging")
    second = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO,
                             repo_type="dataset", revision="staging", create_pr=True)
    assert second.pr_revision == "refs/pr/2"
    assert api.list_repo_files(REPO, repo_type="dataset", revision="refs/pr/2") == [
        ".gitattributes", "README.md", "x.txt"]
    assert "x.txt" not in api.list_repo_files(REPO, repo_type="dataset", revision="staging")
    with pytest.raises(RevisionNotFoundError):  # a PR targets a branch, not a commit
        api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=REPO,
                        repo_type="dataset", revision=main_sha, create_pr=True)

    # Refs, PRs and their numbering survive a restart (they are on disk).
    live, reloaded = (store.get("dataset", REPO)
                      for store in (hub_server.hub.store, Store(hub_server.hub.store.root)))
    assert live is not None and reloaded is not None
    assert (reloaded.refs, reloaded.pulls) == (live.refs, live.pulls)
    assert sorted(reloaded.pulls) == ["1", "2"]


def test_delay_fault(hub_server: HubServer, hub_env: HubEnv) -> None:
    hub_server.faults.add("delay", seconds=0.5, path=r"^/api/whoami-v2$")
    started = time.monotonic()
    HfApi().whoami()
    assert time.monotonic() - started >= 0.5
    assert hub_server.faults.pending() == []


@contextmanager
def served(storage: Path, token: str) -> Iterator[str]:
    """Run ``python tests/hub_server.py`` in a subprocess; yields its URL."""
    script = Path(__file__).with_name("hub_server.py")
    cmd = [sys.executable, str(script), "--port", "0", "--storage", str(storage), "--token", token]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert "listening on" in line, proc.stderr.read()
            yield line.split()[-1]
        finally:
            proc.terminate()


@pytest.mark.filterwarnings(HTTPX2_UPLOAD_WARNING)  # no hub_env here
def test_subprocess_server_admin_api_and_restart(
    tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    token, storage = "hf_subprocess_token_0123456789", tmp_path / "storage"

    with served(storage, token) as url:
        admin = HubAdminClient(url, token)
        admin.faults.add("status", status=503, method="POST", path=r"/lfs/objects/batch$")
        api = HfApi(endpoint=url, token=token)
        api.create_repo(REPO, repo_type="dataset")
        upload(folder, api)  # the 503 on the LFS batch call is retried
        assert admin.faults.pending() == []
        assert admin.stats(REPO)["lfs_objects_uploaded"] == 1
        assert [r["status"] for r in admin.requests() if r["route"] == "lfs_batch"] == [503, 200]

    with served(storage, token) as url:  # same storage: repos, commits and objects survive
        api, admin = HfApi(endpoint=url, token=token), HubAdminClient(url, token)
        files = api.list_repo_files(REPO, repo_type="dataset")
        assert files == [".gitattributes", "README.md", PARQUET]
        admin.corrupt_file(REPO, PARQUET)
        local = hf_hub_download(REPO, PARQUET, repo_type="dataset", endpoint=url, token=token,
                                cache_dir=tmp_path / "cache")
        # hf_hub_download does not check content hashes: a corrupted object arrives as is.
        remote_sha = api.get_paths_info(REPO, PARQUET, repo_type="dataset")[0].lfs.sha256
        assert sha256(Path(local)) != remote_sha == sha256(folder / PARQUET)
        admin.remove_file(REPO, "README.md")
        assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", PARQUET]
