"""Publishing through the generated repo's push.py to a local Hub-protocol server, with the
real huggingface_hub, hf_xet and datasets clients (the Xet transport, as for every user with
hf_xet installed; one test that is about LFS objects runs with HF_HUB_DISABLE_XET=1)."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from bids_hf._state import Manifest
from conftest import HUB_PUSH_FLAGS, run_push
from hub_fixtures import HubEnv
from hubserver import HubServer
from huggingface_hub import HfApi

REPO = "test-org/arc"


def push(repo: Path, env: HubEnv, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return run_push(repo, *HUB_PUSH_FLAGS, *args, env=env.subprocess_env(**extra_env))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("transport", ["xet", "lfs"])
def test_push_then_load_dataset_from_the_hub_returns_the_source_bytes(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        request: pytest.FixtureRequest, transport: str) -> None:
    """The path every user takes (hf_xet installed: Xet), and the legacy LFS path."""
    hub_env: HubEnv = request.getfixturevalue("hub_env" if transport == "xet" else "hub_env_lfs")
    out = tmp_path / "staged"
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                "--repo-id", REPO, "--max-shard-size", "40KB", "--check-load")
    assert done.returncode == 0, done.stderr
    assert f"Published {REPO} (private, main)" in done.stdout
    for check in ("remote files match manifest", "no stale shards on the Hub",
                  "load_dataset from the Hub"):
        assert re.search(rf"ok\s+{check}", done.stderr), check
    assert HfApi().dataset_info(REPO).private is True
    assert hub_env.token not in done.stdout + done.stderr

    ds = datasets.load_dataset(REPO, split="train")
    raw = datasets.Nifti(decode=False)  # the stored {"bytes", "path"}
    ds = ds.cast_column("t1w", datasets.List(raw)).cast_column("dwi", datasets.List(raw))
    ds = ds.cast_column("lesion", raw)
    checked = 0
    for row in ds:
        for cell in [*row["t1w"], *row["dwi"], *([row["lesion"]] if row["lesion"] else [])]:
            assert sha(cell["bytes"]) == sha((arc_tree / cell["path"]).read_bytes()), cell["path"]
            checked += 1
    assert checked == sum(1 for p in arc_tree.rglob("*.nii.gz")
                          if "_T1w" in p.name or "_dwi" in p.name or "lesion" in p.name)
    stats = hub_server.stats(REPO)
    used = stats.get("xet_xorb_bytes_uploaded", 0) > 0, stats.get("lfs_bytes_uploaded", 0) > 0
    assert used == ((True, False) if transport == "xet" else (False, True)), stats


def test_rerun_sends_nothing_and_new_plans_replace_old_shards(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    first = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                 "--repo-id", REPO, "--max-shard-size", "40KB")
    assert first.returncode == 0, first.stderr
    old = {p.relative_to(out).as_posix() for p in (out / "data").rglob("*.parquet")}
    hub_server.reset_stats()
    again = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only")
    assert again.returncode == 0, again.stderr
    stats = hub_server.stats(REPO)
    assert stats.get("upload_bytes_received", 0) == 0 and stats.get("commits", 0) == 0
    assert "commit (none needed)" in again.stderr

    bigger = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                  "--repo-id", REPO, "--max-shard-size", "1GB")
    assert bigger.returncode == 0, bigger.stderr
    remote = {p for p in HfApi().list_repo_files(REPO, repo_type="dataset")
              if p.startswith("data/")}
    assert remote == {"data/train-00000-of-00001.parquet",  # the full table and its
                      "data/anat/train-00000-of-00001.parquet"}  # `anat` config's file
    assert not old & remote
    assert f"{len(old)} stale deleted" in bigger.stderr


def test_a_failed_commit_is_resumed_by_rerunning_without_resending(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    hub_server.faults.add("status", path=r"/commit/", method="POST", status=500, times=10)
    failed = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                  "--repo-id", REPO, "--max-shard-size", "40KB", "--max-retries", "1")
    assert failed.returncode == 3
    assert "committing: HTTP 500; retrying" in failed.stderr
    assert "Rerun the same command to resume" in failed.stderr
    landed = hub_server.stats(REPO)["files_stored"]
    binary = [n for n in Manifest.read(out).files if n != "README.md"]  # shards and qc.png
    assert landed == len(binary)  # every file's content reached storage, nothing was committed
    hub_server.faults.clear()
    hub_server.reset_stats()
    resumed = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only")
    assert resumed.returncode == 0, resumed.stderr
    stats = hub_server.stats(REPO)
    assert stats.get("bytes_stored", 0) == 0, "shards that had landed were sent again"
    assert stats["commits"] == 1


@pytest.mark.slow
def test_killed_upload_resumes_without_resending_what_landed(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env_lfs: HubEnv) -> None:
    # LFS: one PUT per object, so a delay per PUT makes the kill land between objects.
    hub_env = hub_env_lfs
    out = tmp_path / "staged"
    # More LFS objects than huggingface_hub's 5 upload threads, so a kill lands midway.
    staged = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                  "--max-shard-size", "12KB", "--row-group-size", "6KB")
    assert staged.returncode == 0, staged.stderr
    lfs_files = len([n for n in Manifest.read(out).files if n != "README.md"])
    hub_server.faults.add("delay", path=r"^/_lfs/upload/", seconds=0.4, times=None)
    proc = subprocess.Popen(
        [sys.executable, "push.py", "--no-progress", "--out", str(out), "--repo-id", REPO,
         "--upload-only"], cwd=arc_repo, env=hub_env.subprocess_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and hub_server.stats(REPO).get("lfs_objects_uploaded", 0) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    landed = hub_server.stats(REPO)["lfs_objects_uploaded"]
    assert lfs_files > 10 and 2 <= landed < lfs_files, "not killed midway"
    hub_server.faults.clear()
    hub_server.reset_stats()
    resumed = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only")
    assert resumed.returncode == 0, resumed.stderr
    stats = hub_server.stats(REPO)
    assert stats["lfs_objects_uploaded"] == lfs_files - landed
    assert stats["lfs_objects_skipped"] >= landed
    assert stats["commits"] == 1


def test_verification_names_a_removed_replaced_or_corrupted_shard(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    assert push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                "--repo-id", REPO, "--max-shard-size", "40KB").returncode == 0
    names = sorted(f"data/{p.name}" for p in (out / "data").glob("*.parquet"))
    ok = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--verify-only")
    assert ok.returncode == 0 and f"OK: the Hub copy of {REPO}" in ok.stdout

    hub_server.remove_file(REPO, names[0])
    removed = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--verify-only")
    assert removed.returncode == 1
    assert f"{names[0]}: missing on the Hub" in removed.stderr

    HfApi().upload_file(path_or_fileobj=(out / names[2]).read_bytes(), path_in_repo=names[1],
                        repo_id=REPO, repo_type="dataset")
    replaced = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--verify-only")
    assert replaced.returncode == 1
    assert f"{names[1]}: the Hub's copy differs" in replaced.stderr

    hub_server.corrupt_file(REPO, names[3])  # bytes changed behind intact metadata
    full = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--verify-only",
                "--verify-remote", "full")
    assert full.returncode == 1
    assert f"{names[3]}: downloaded bytes do not match its sha256" in full.stderr

    repaired = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only")
    assert repaired.returncode == 0, repaired.stderr
    assert "uploaded 2 file(s)" in repaired.stderr  # the removed and the replaced shard


def test_wrong_token_is_a_clear_401_and_never_printed(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    wrong = "hf_wrong_" + "x" * 30
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                "--repo-id", REPO, HF_TOKEN=wrong)
    assert done.returncode == 3
    assert "the Hub rejected the token (HTTP 401" in done.stderr
    assert "Set HF_TOKEN to a valid token" in done.stderr
    assert wrong not in done.stdout + done.stderr and hub_env.token not in done.stderr


def test_public_on_request_and_an_unverified_folder_is_refused(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                "--repo-id", "test-org/open", "--public", "--affirm-defaced")
    assert done.returncode == 0, done.stderr
    assert HfApi().dataset_info("test-org/open").private is False
    # A staged folder rebuilt since its verification is refused until verified again.
    (out / ".bids_hf" / "manifest.json").write_text(
        (out / ".bids_hf" / "manifest.json").read_text().replace('"dataset"', '"dataset" '))
    refused = push(arc_repo, hub_env, "--out", str(out), "--repo-id", "test-org/open",
                   "--upload-only")
    assert refused.returncode == 2
    assert "has not passed verification since it was last staged" in refused.stderr
