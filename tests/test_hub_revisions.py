"""Publishing to a branch (``--revision``) and as a pull request (``--create-pr``) through the
generated repo's push.py, against the local Hub-protocol server with the real clients."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import datasets
from bids_hf._state import Manifest
from conftest import HUB_PUSH_FLAGS, run_push
from hub_fixtures import HubEnv
from hubserver import HubServer
from huggingface_hub import HfApi

REPO = "test-org/arc"
REMOTE_CHECKS = ("remote files match manifest", "no stale shards on the Hub")


def push(repo: Path, env: HubEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return run_push(repo, *HUB_PUSH_FLAGS, *args, env=env.subprocess_env())


def remote_files(revision: str = "main") -> set[str]:
    return set(HfApi().list_repo_files(REPO, repo_type="dataset", revision=revision))


def test_revision_publishes_to_that_branch_only(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                "--repo-id", REPO, "--max-shard-size", "40KB", "--revision", "staging-v2")
    assert done.returncode == 0, done.stderr
    assert f"Published {REPO} (private, staging-v2)" in done.stdout
    assert re.search(r"commit [0-9a-f]{40} on staging-v2", done.stderr), done.stderr
    for check in REMOTE_CHECKS:
        assert re.search(rf"ok\s+{check}", done.stderr), check

    manifest = Manifest.read(out)
    assert len(manifest.shards) > 1
    assert set(manifest.files) <= remote_files("staging-v2")
    assert not {p for p in remote_files() if p.startswith("data/")}, "shards landed on main"
    assert "README.md" not in remote_files()

    # The remote check is per revision: the branch passes, main lacks every file.
    on_branch = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--verify-only",
                     "--revision", "staging-v2")
    assert on_branch.returncode == 0, on_branch.stderr
    assert f"OK: the Hub copy of {REPO} (staging-v2)" in on_branch.stdout
    on_main = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--verify-only")
    assert on_main.returncode == 1
    assert f"{manifest.shard_names[0]}: missing on the Hub" in on_main.stderr

    ds = datasets.load_dataset(REPO, split="train", revision="staging-v2")
    assert ds.num_rows == manifest.splits["train"]["num_examples"] > 0


def test_create_pr_publishes_into_the_pull_request_ref(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                "--repo-id", REPO, "--max-shard-size", "40KB", "--create-pr")
    assert done.returncode == 0, done.stderr
    assert re.search(r"commit [0-9a-f]{40} on refs/pr/1\b", done.stderr), done.stderr
    for check in REMOTE_CHECKS:  # verify_remote ran against refs/pr/1, and passed
        assert re.search(rf"ok\s+{check}", done.stderr), check
    assert f"Published {REPO} (private, refs/pr/1)" in done.stdout

    manifest = Manifest.read(out)
    assert set(manifest.files) <= remote_files("refs/pr/1")
    assert not {p for p in remote_files() if p.startswith("data/")}, "shards landed on main"
    refs = HfApi().list_repo_refs(REPO, repo_type="dataset", include_pull_requests=True)
    assert [b.name for b in refs.branches] == ["main"]
    assert [p.ref for p in refs.pull_requests or []] == ["refs/pr/1"]


# A commit the Hub applied but whose reply never reached the client. publish() retries after
# the transport error; it must first find out what landed, since replaying the commit would
# open a second pull request, or delete stale shards that are already gone (a 404).
LOST_REPLY = {"kind": "drop", "on_response": True, "method": "POST", "path": r"/commit/"}


def test_a_lost_commit_reply_does_not_open_a_second_pull_request(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    hub_server.faults.add(**LOST_REPLY)
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(tmp_path / "out"),
                "--repo-id", REPO, "--max-shard-size", "40KB", "--create-pr")
    assert "committing: RemoteProtocolError" in done.stderr  # the lost reply was retried
    refs = HfApi().list_repo_refs(REPO, repo_type="dataset", include_pull_requests=True)
    assert [p.ref for p in refs.pull_requests or []] == ["refs/pr/1"]
    assert done.returncode == 0 and "on refs/pr/1" in done.stderr


def test_a_lost_commit_reply_with_stale_deletions_is_not_a_failure(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    first = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                 "--repo-id", REPO, "--max-shard-size", "40KB", "--revision", "staging-v2")
    assert first.returncode == 0, first.stderr
    hub_server.faults.add(**LOST_REPLY)
    bigger = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                  "--repo-id", REPO, "--max-shard-size", "1GB", "--revision", "staging-v2")
    assert "committing: RemoteProtocolError" in bigger.stderr
    assert remote_files("staging-v2") >= set(Manifest.read(out).files)  # the commit landed
    assert bigger.returncode == 0, bigger.stderr


def test_rerunning_create_pr_reuses_the_pull_request_that_holds_the_upload(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_env: HubEnv) -> None:
    args = ["--bids-root", str(arc_tree), "--out", str(tmp_path / "out"), "--repo-id", REPO,
            "--max-shard-size", "40KB", "--create-pr"]
    assert push(arc_repo, hub_env, *args).returncode == 0
    again = push(arc_repo, hub_env, *args)
    assert again.returncode == 0, again.stderr
    assert "pull request refs/pr/1 already holds exactly this upload" in again.stderr
    refs = HfApi().list_repo_refs(REPO, repo_type="dataset", include_pull_requests=True)
    assert [p.ref for p in refs.pull_requests or []] == ["refs/pr/1"]
