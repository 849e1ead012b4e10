"""Tests of the local Hub stand-in (``tests/hubserver``), driven through the real
huggingface_hub, hf_xet and datasets clients, over both transports: Xet (the default of every
client with hf_xet) and LFS (``HF_HUB_DISABLE_XET=1``)."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
import hf_xet
import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_fixtures import HTTPX2_UPLOAD_WARNING, HubEnv
from hubserver import STORAGE_LIMIT_MESSAGE, HubAdminClient, HubServer, Store
from huggingface_hub import (
    CommitOperationAdd,
    GitRefInfo,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
)
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.lfs import UploadInfo, post_lfs_batch_info
from huggingface_hub.utils import build_hf_headers, get_session

REPO = "test-org/bids-demo"
PARQUET = "data/train-00000-of-00001.parquet"
ROWS, BLOB = 210, 100_000  # ~21 MB of incompressible bytes: more than one xorb chunk run
TEMPLATE_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder as the pipeline produces it: a card plus one ~21 MB Parquet shard of
    random bytes (read-only: copy it to change it)."""
    root = tmp_path_factory.mktemp("export")
    (root / "data").mkdir()
    (root / "README.md").write_text("---\nlicense: cc0-1.0\n---\n# Demo\n")
    rng = random.Random(0)
    table = pa.table({"participant_id": [f"sub-{i:04d}" for i in range(ROWS)],
                      "blob": [rng.randbytes(BLOB) for _ in range(ROWS)]})
    pq.write_table(table, root / PARQUET, compression="none")
    return root


@pytest.fixture(params=["xet", "lfs"])
def client(request: pytest.FixtureRequest) -> HubEnv:
    """The clients set up for one transport (both against the same kind of server)."""
    env: HubEnv = request.getfixturevalue("hub_env" if request.param == "xet" else "hub_env_lfs")
    return env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(folder: Path, api: HfApi | None = None, revision: str | None = None) -> None:
    (api or HfApi()).upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder,
                                   revision=revision)


def routes(server: HubServer) -> list[tuple[str, str, object]]:
    return [(r["method"], r["route"], r["status"]) for r in server.requests()]


def calls(server: HubServer) -> list[tuple[str, str]]:
    skip = ("validate_yaml", "repo_create", "repo_info")
    return [(m, r) for m, r, _ in routes(server) if r not in skip]


# -- fixtures and repos ----------------------------------------------------------------------


def test_fixtures_point_clients_at_server(client: HubEnv) -> None:
    from huggingface_hub.utils._runtime import is_xet_available

    url = hf_hub_url(REPO, "README.md", repo_type="dataset")
    assert url.startswith(client.url + "/datasets/")
    assert client.url == datasets.config.HF_ENDPOINT
    assert is_xet_available() is client.xet
    assert client.subprocess_env()["HF_HUB_DISABLE_XET"] == ("0" if client.xet else "1")
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


def test_settings_gate_and_change_visibility(hub_server: HubServer, hub_env: HubEnv) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset", private=True)
    assert api.dataset_info(REPO).gated is False
    for gated in ("auto", "manual", False):
        api.update_repo_settings(REPO, gated=gated, repo_type="dataset")
        assert api.dataset_info(REPO).gated == gated
    api.update_repo_settings(REPO, private=False, repo_type="dataset")
    assert api.dataset_info(REPO).private is False
    api.update_repo_settings(REPO, private=True, gated="manual", repo_type="dataset")
    info = api.dataset_info(REPO)
    assert (info.private, info.gated) == (True, "manual")
    assert ("PUT", "repo_settings", 200) in routes(hub_server)

    hub_server.add_token("hf_other_user_token", "someone-else")
    api.update_repo_settings(REPO, private=False, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:  # may read a public repo, not change it
        HfApi(token="hf_other_user_token").update_repo_settings(REPO, gated=False,
                                                                repo_type="dataset")
    assert exc.value.response.status_code == 403
    response = get_session().put(f"{hub_env.url}/api/datasets/{REPO}/settings",
                                 json={"gated": "sometimes"}, headers=build_hf_headers())
    assert response.status_code == 400 and "gated" in response.json()["error"]


# -- the two transports, end to end ----------------------------------------------------------


def test_round_trip_is_byte_identical(hub_server: HubServer, client: HubEnv, folder: Path) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset", private=True)
    upload(folder)

    if client.xet:  # hf_xet wrote the chunks into the server's CAS folder itself
        assert calls(hub_server) == [("POST", "preupload"), ("GET", "xet_write_token"),
                                     ("POST", "commit")]
    else:
        assert calls(hub_server) == [("POST", "preupload"), ("POST", "lfs_batch"),
                                     ("PUT", "lfs_upload"), ("POST", "lfs_verify"),
                                     ("POST", "commit")]
    size, digest = (folder / PARQUET).stat().st_size, sha256(folder / PARQUET)
    stats = hub_server.stats(REPO)
    assert stats["files_stored"] == 1
    if client.xet:  # random bytes: stored compressed-as-is, nothing to deduplicate
        assert stats["xet_file_bytes_uploaded"] == size
        assert size * 0.99 < stats["xet_xorb_bytes_uploaded"] == stats["bytes_stored"] < size * 1.01
    else:
        assert stats["lfs_bytes_uploaded"] == stats["bytes_stored"] == size

    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", "README.md",
                                                              PARQUET]
    shard, readme = api.get_paths_info(REPO, [PARQUET, "README.md"], repo_type="dataset")
    # Xet files are LFS files too (pointer in git, sha256 in "lfs"), plus their Xet hash.
    assert shard.lfs is not None and (shard.lfs.sha256, shard.lfs.size, shard.size) == (
        digest, size, size)
    xet_hash = hf_xet.hash_files([str(folder / PARQUET)])[0].hash
    assert shard.xet_hash == (xet_hash if client.xet else None)
    assert readme.lfs is None and readme.xet_hash is None and readme.blob_id
    tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True,
                                                  expand=True)}
    assert set(tree) == {".gitattributes", "README.md", "data", PARQUET}
    assert tree[PARQUET].lfs.sha256 == digest and tree[PARQUET].last_commit is not None

    hub_server.reset_stats()
    local = Path(hf_hub_download(REPO, PARQUET, repo_type="dataset"))
    assert local.read_bytes() == (folder / PARQUET).read_bytes()
    got = hub_server.stats(REPO)
    if client.xet:  # read from the CAS by hf_xet: no GET on resolve, xorb ranges counted
        assert ("GET", "xet_read_token", 200) in routes(hub_server)
        assert ("GET", "resolve") not in calls(hub_server)
        assert size * 0.99 < got["xet_xorb_bytes_sent"] == got["download_bytes_sent"] < size * 1.01
    else:
        assert got["download_bytes_sent"] == size

    # Range reads, as HfFileSystem does when datasets streams Parquet (for Xet files the
    # server reads them through hf_xet: the Hub's bridge); the client reads ahead a block.
    hub_server.reset_stats()
    fs = HfFileSystem()
    for start, end in ((100, 150), (size - 30, size), (BLOB * 100 + 7, BLOB * 100 + 70_007)):
        chunk = fs.cat_file(f"datasets/{REPO}/{PARQUET}", start=start, end=end)
        assert chunk == (folder / PARQUET).read_bytes()[start:end]
    assert ("GET", "resolve", 206) in routes(hub_server)
    assert 70_000 < hub_server.stats(REPO)["download_bytes_sent"] < 3 * size

    expected = pq.read_table(folder / PARQUET).to_pylist()
    ds = datasets.load_dataset(REPO, split="train")
    assert ds.num_rows == ROWS and ds.to_list() == expected
    hub_server.reset_stats()
    assert list(datasets.load_dataset(REPO, split="train", streaming=True)) == expected
    assert ("GET", "resolve", 206) in routes(hub_server)


def test_republishing_sends_only_what_changed(
    hub_server: HubServer, client: HubEnv, folder: Path, tmp_path: Path
) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    upload(folder)
    hub_server.reset_stats()

    upload(folder)  # unchanged: no commit, nothing stored
    stats = hub_server.stats(REPO)
    assert not {"commits", "files_stored", "bytes_stored"} & stats.keys()
    if client.xet:  # chunked again, all deduplicated: only a shard of file entries is written
        assert stats["xet_shards_uploaded"] == 1 and stats["upload_bytes_received"] < 10_000
    else:
        assert stats["lfs_objects_skipped"] == 1 and "upload_bytes_received" not in stats

    # 100 bytes changed in the middle of the 21 MB shard: Xet sends a chunk, LFS everything.
    changed = tmp_path / "changed"
    changed.mkdir()
    data = bytearray((folder / PARQUET).read_bytes())
    data[len(data) // 2: len(data) // 2 + 100] = bytes(100)
    (changed / "shard.parquet").write_bytes(data)
    hub_server.reset_stats()
    HfApi().upload_file(path_or_fileobj=changed / "shard.parquet", path_in_repo=PARQUET,
                        repo_id=REPO, repo_type="dataset")
    stats = hub_server.stats(REPO)
    assert stats["commits"] == 1
    if client.xet:
        assert stats["xet_file_bytes_uploaded"] == len(data)
        assert 0 < stats["bytes_stored"] < 200_000  # one or two chunks of ~64 KB
    else:
        assert stats["bytes_stored"] == len(data)
    local = hf_hub_download(REPO, PARQUET, repo_type="dataset")
    assert Path(local).read_bytes() == data


def test_server_counts_the_xorb_bytes_hf_xet_reports(hub_server: HubServer, hub_env: HubEnv,
                                                     folder: Path) -> None:
    """The server's storage counters against hf_xet's own dedup metrics, for an upload made
    with hf_xet directly (token from the server's write-token route, as huggingface_hub does)."""
    HfApi().create_repo(REPO, repo_type="dataset")
    session = hf_xet.XetSession()
    token_url = f"{hub_env.url}/api/datasets/{REPO}/xet-write-token/main"
    for path, new in ((PARQUET, True), ("README.md", True), (PARQUET, False)):
        hub_server.reset_stats()
        commit = session.new_upload_commit(token_refresh_url=token_url,
                                           token_refresh_headers=build_hf_headers())
        commit.start_upload_file(str(folder / path))
        metrics = commit.wait_to_finish().dedup_metrics
        stats = hub_server.stats(REPO)
        assert stats.get("xet_xorb_bytes_uploaded", 0) == metrics.xorb_bytes_uploaded
        assert stats.get("xet_file_bytes_uploaded", 0) == (metrics.total_bytes if new else 0)
    assert metrics.deduped_bytes == metrics.total_bytes  # the third: all deduplicated


# -- faults -----------------------------------------------------------------------------------


def test_429_with_retry_after_on_commit_is_retried(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    hub_server.faults.add("status", status=429, retry_after=1, method="POST", path=r"/commit/")

    started = time.monotonic()
    upload(folder)  # upload_folder over Xet retries its commits

    assert time.monotonic() - started >= 1  # huggingface_hub waits Retry-After
    assert [s for _, r, s in routes(hub_server) if r == "commit"] == [429, 200]
    assert HfApi().list_repo_files(REPO, repo_type="dataset")[-1] == PARQUET


def test_storage_quota_is_a_403_in_the_hubs_words(hub_server: HubServer, hub_env: HubEnv,
                                                  folder: Path) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset", private=True)
    hub_server.faults.add("quota", method="POST", path=r"/commit/")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(REPO, [CommitOperationAdd(PARQUET, folder / PARQUET)],
                          commit_message="x", repo_type="dataset")
    assert exc.value.response.status_code == 403
    assert exc.value.server_message == STORAGE_LIMIT_MESSAGE
    assert "Private repository storage limit reached" in str(exc.value)
    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes"]


def test_stalled_routes_delay_listing_info_and_downloads(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    api.upload_file(path_or_fileobj=folder / "README.md", path_in_repo="README.md",
                    repo_id=REPO, repo_type="dataset")
    stalls = [
        (r"/tree/", lambda: api.list_repo_tree(REPO, repo_type="dataset")),
        (r"/paths-info/", lambda: api.get_paths_info(REPO, ["README.md"], repo_type="dataset")),
        (r"/resolve/", lambda: hf_hub_download(REPO, "README.md", repo_type="dataset")),
    ]
    for path, call in stalls:
        hub_server.faults.add("delay", seconds=0.4, path=path)
        started = time.monotonic()
        list(call() or [])
        assert time.monotonic() - started >= 0.4, path
        assert hub_server.faults.pending() == []

    # A stall longer than the client's patience: the HEAD call times out.
    hub_server.faults.add("delay", seconds=1.5, path=r"/resolve/", method="HEAD")
    with pytest.raises(httpx2.TimeoutException):
        get_hf_file_metadata(hf_hub_url(REPO, "README.md", repo_type="dataset"), timeout=0.5)


def test_connection_dropped_mid_lfs_upload_is_retried(
    hub_server: HubServer, hub_env_lfs: HubEnv, folder: Path
) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    hub_server.faults.add("drop", after_bytes=50_000, method="PUT", path=r"^/_lfs/upload/")

    upload(folder)  # http_backoff retries the PUT on the broken connection

    size = (folder / PARQUET).stat().st_size
    stats = hub_server.stats(REPO)
    assert stats["upload_bytes_received"] == 50_000 + size
    assert stats["lfs_objects_uploaded"] == 1
    assert [s for m, r, s in routes(hub_server) if r == "lfs_upload"] == ["dropped", 200]


def test_lfs_upload_urls_are_presigned(hub_server: HubServer, hub_env_lfs: HubEnv,
                                       folder: Path) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    info = UploadInfo.from_path(str(folder / "README.md"))
    actions, errors, _ = post_lfs_batch_info(upload_infos=[info], repo_type="dataset",
                                             repo_id=REPO, token=hub_env_lfs.token)
    assert not errors
    href = actions[0]["actions"]["upload"]["href"]
    assert "sig=" in href and "expires=" in href and hub_env_lfs.token not in href
    body = (folder / "README.md").read_bytes()
    forged = href.replace("sig=", "sig=0")
    assert get_session().put(forged, content=body).status_code == 403  # no Authorization
    assert get_session().put(href, content=body).status_code == 200
    again, _, _ = post_lfs_batch_info(upload_infos=[info], repo_type="dataset", repo_id=REPO,
                                      token=hub_env_lfs.token)
    assert "actions" not in again[0]  # stored: the client skips it


def test_connection_dropped_on_commit_then_rerun_completes(
    hub_server: HubServer, hub_env_lfs: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    # The commit POST of create_commit is not retried: the whole upload_folder call fails.
    hub_server.faults.add("drop", after_bytes=10, method="POST", path=r"/commit/")
    with pytest.raises(httpx2.TransportError):
        upload(folder)
    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes"]
    assert hub_server.stats(REPO)["lfs_objects_uploaded"] == 1  # the LFS bytes did land

    hub_server.reset_stats()
    upload(folder)

    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", "README.md",
                                                              PARQUET]
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
        api.create_commit(REPO, [CommitOperationAdd(PARQUET, folder / PARQUET)],
                          commit_message="x", repo_type="dataset")
    # Handled, then cut: the client saw an error, yet the commit is on the Hub.
    assert ("POST", "commit", "dropped") in routes(hub_server)
    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", PARQUET]
    assert hub_server.stats(REPO)["commits"] == 1


def test_wrong_token_gives_401_without_leaking_it(
    hub_server: HubServer, client: HubEnv, folder: Path
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


# -- the Xet routes themselves ---------------------------------------------------------------


def test_xet_tokens_resolve_headers_and_cas_access(hub_server: HubServer, hub_env: HubEnv,
                                                   folder: Path) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset", private=True)
    upload(folder)
    session, headers = get_session(), build_hf_headers()
    base = f"{hub_env.url}/api/datasets/{REPO}"

    write = session.get(f"{base}/xet-write-token/main", headers=headers)
    assert write.json()["casUrl"] == f"local://{hub_server.cas_dir}"
    assert write.headers["X-Xet-Cas-Url"] == write.json()["casUrl"]
    read = session.get(f"{base}/xet-read-token/main", headers=headers)
    body = read.json()
    assert body["casUrl"] == f"{hub_env.url}/_xet" == read.headers["X-Xet-Cas-Url"]
    assert body["accessToken"] == read.headers["X-Xet-Access-Token"]
    assert int(read.headers["X-Xet-Token-Expiration"]) == body["exp"] > time.time()
    assert session.get(f"{base}/xet-read-token/nope", headers=headers).status_code == 404
    hub_server.add_token("hf_other_user_token", "someone-else")
    other = {"Authorization": "Bearer hf_other_user_token"}
    assert session.get(f"{base}/xet-read-token/main", headers=other).status_code == 404

    meta = get_hf_file_metadata(hf_hub_url(REPO, PARQUET, repo_type="dataset"))
    xet_hash = hf_xet.hash_files([str(folder / PARQUET)])[0].hash
    assert meta.xet_file_data is not None and meta.xet_file_data.file_hash == xet_hash
    assert meta.xet_file_data.refresh_route == f"{base}/xet-read-token/{meta.commit_hash}"
    assert meta.size == (folder / PARQUET).stat().st_size
    assert meta.etag == sha256(folder / PARQUET)

    # The CAS read API wants the CAS token; its xorb URLs are pre-signed (no token).
    recon_url = f"{hub_env.url}/_xet/v1/reconstructions/{xet_hash}"
    assert session.get(recon_url).status_code == 401
    cas = {"Authorization": f"Bearer {body['accessToken']}", "Range": "bytes=0-99"}
    recon = session.get(recon_url, headers=cas).json()
    assert recon["offset_into_first_range"] == 0 and len(recon["terms"]) == 1
    [fetch] = recon["fetch_info"][recon["terms"][0]["hash"]]
    assert "sig=" in fetch["url"]
    span = f"bytes={fetch['url_range']['start']}-{fetch['url_range']['end']}"
    assert session.get(fetch["url"].replace("sig=", "sig=0"), headers={"Range": span}
                       ).status_code == 403
    raw = session.get(fetch["url"], headers={"Range": span})
    assert raw.status_code == 206 and len(raw.content) == fetch["url_range"]["end"] + 1 - \
        fetch["url_range"]["start"]
    beyond = {**cas, "Range": f"bytes={meta.size}-"}
    assert session.get(recon_url, headers=beyond).status_code == 416


def test_xet_upload_without_a_commit_is_counted_then_committed_without_resending(
    hub_server: HubServer, hub_env: HubEnv, folder: Path
) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    hub_server.faults.add("status", status=500, method="POST", path=r"/commit/")
    with pytest.raises(HfHubHTTPError):
        api.create_commit(REPO, [CommitOperationAdd(PARQUET, folder / PARQUET)],
                          commit_message="x", repo_type="dataset")
    stats = hub_server.stats(REPO)
    assert stats["files_stored"] == 1 and stats["bytes_stored"] > BLOB * ROWS
    hub_server.reset_stats()
    api.create_commit(REPO, [CommitOperationAdd(PARQUET, folder / PARQUET)],
                      commit_message="x", repo_type="dataset")
    stats = hub_server.stats(REPO)
    assert stats["commits"] == 1 and "bytes_stored" not in stats


def test_a_server_without_xet_speaks_lfs_only(hub_env_lfs: HubEnv, tmp_path: Path,
                                              folder: Path) -> None:
    token = "hf_lfs_only_token_0123456789"
    with HubServer(tmp_path / "storage", [token], xet=False) as server:
        api = HfApi(endpoint=server.url, token=token)
        api.create_repo(REPO, repo_type="dataset")
        upload(folder, api)
        headers = {"Authorization": f"Bearer {token}"}
        base = f"{server.url}/api/datasets/{REPO}"
        assert get_session().get(f"{base}/xet-write-token/main", headers=headers
                                 ).status_code == 404
        meta = get_hf_file_metadata(hf_hub_url(REPO, PARQUET, repo_type="dataset",
                                               endpoint=server.url), token=token)
        assert meta.xet_file_data is None and meta.etag == sha256(folder / PARQUET)
        assert server.stats(REPO)["lfs_objects_uploaded"] == 1


# -- branches and pull requests ---------------------------------------------------------------


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

    upload(folder, revision="staging")

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
        upload(folder, revision="nope")
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
    with pytest.raises(RevisionNotFoundError):  # a PR targets a branch, not a commit
        api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=REPO,
                        repo_type="dataset", revision=main_sha, create_pr=True)

    # upload_folder(create_pr=True) over Xet opens the PR first (discussions API).
    third = api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder / "data",
                              path_in_repo="more", create_pr=True)
    assert third.pr_revision == "refs/pr/3"
    assert f"more/{PARQUET.split('/')[1]}" in api.list_repo_files(
        REPO, repo_type="dataset", revision="refs/pr/3")
    assert api.get_discussion_details(REPO, 3, repo_type="dataset").target_branch == (
        "refs/heads/main")

    # Refs, PRs and their numbering survive a restart (they are on disk).
    live, reloaded = (store.get("dataset", REPO)
                      for store in (hub_server.hub.store, Store(hub_server.hub.store.root)))
    assert live is not None and reloaded is not None
    assert (reloaded.refs, reloaded.pulls) == (live.refs, live.pulls)
    assert sorted(reloaded.pulls) == [1, 2, 3]


# -- a server in another process ------------------------------------------------------------


@contextmanager
def served(storage: Path, token: str) -> Iterator[str]:
    """``python -m tests.hubserver`` from the repo root, in a subprocess; yields its URL."""
    cmd = [sys.executable, "-m", "tests.hubserver", "--storage", str(storage), "--token", token]
    with subprocess.Popen(cmd, cwd=TEMPLATE_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert "listening on" in line, proc.stderr.read()
            yield line.split()[-1]
        finally:
            proc.terminate()


@pytest.mark.filterwarnings(HTTPX2_UPLOAD_WARNING)
def test_subprocess_server_admin_api_and_restart(hub_env: HubEnv, tmp_path: Path,
                                                 folder: Path) -> None:
    # hub_env only for its caches and Xet switch; these clients name their own endpoint.
    token, storage = "hf_subprocess_token_0123456789", tmp_path / "storage"
    with served(storage, token) as url:
        admin = HubAdminClient(url, token)
        admin.faults.add("status", status=503, method="POST", path=r"/preupload/")
        api = HfApi(endpoint=url, token=token)
        api.create_repo(REPO, repo_type="dataset")
        upload(folder, api)  # the 503 on preupload is retried; the bytes go over Xet
        assert admin.faults.pending() == []
        assert admin.stats(REPO)["files_stored"] == 1
        assert [r["status"] for r in admin.requests() if r["route"] == "preupload"] == [503, 200]

    with served(storage, token) as url:  # same storage: repos, commits and the CAS survive
        api, admin = HfApi(endpoint=url, token=token), HubAdminClient(url, token)
        assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", "README.md",
                                                                  PARQUET]
        admin.corrupt_file(REPO, PARQUET)
        local = hf_hub_download(REPO, PARQUET, repo_type="dataset", endpoint=url, token=token,
                                cache_dir=tmp_path / "cache")
        # Neither hf_hub_download nor hf_xet checks content hashes: the damage arrives as is.
        remote_sha = api.get_paths_info(REPO, PARQUET, repo_type="dataset")[0].lfs.sha256
        assert sha256(Path(local)) != remote_sha == sha256(folder / PARQUET)
        assert Path(local).stat().st_size == (folder / PARQUET).stat().st_size
        admin.remove_file(REPO, "README.md")
        assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", PARQUET]
