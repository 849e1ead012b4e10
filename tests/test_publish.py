"""The Hub path users take, offline: push.py against the local Hub server over Xet (the
default of every client with hf_xet) — only verified bytes are sent, a re-publish sends only
what changed, every request is bounded in time, and the repo gets what the card asks for."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HUB_PUSH_FLAGS, run_push
from hub_fixtures import HubEnv
from hubserver import HubServer
from huggingface_hub import HfApi, hf_hub_download

from benchmarks.bench_republish import change_one_value, restore, withhold
from examples.cohorts import make_arc

REPO = "test-org/arc"


def push(repo: Path, env: HubEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return run_push(repo, *HUB_PUSH_FLAGS, *args, env=env.subprocess_env())


def staged(arc_repo: Path, tree: Path, out: Path, env: HubEnv, *args: str) -> None:
    done = push(arc_repo, env, "--bids-root", str(tree), "--out", str(out), *args)
    assert done.returncode == 0, done.stderr


def test_a_shard_changed_after_verification_is_refused_before_anything_is_sent(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_server: HubServer,
        hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    staged(arc_repo, arc_tree, out, hub_env, "--max-shard-size", "40KB")
    shard = min((out / "data").glob("*.parquet"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only a hash tells
    shard.write_bytes(bytes(data))
    done = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only")
    assert done.returncode == 1  # a check failed, the file named
    assert f"{shard} changed since it was verified" in done.stderr
    stats = hub_server.stats(REPO)
    assert stats.get("commits", 0) == 0 and stats.get("bytes_stored", 0) == 0


def test_killed_xet_upload_then_rerun_converges(arc_repo: Path, arc_tree: Path, tmp_path: Path,
                                                hub_server: HubServer, hub_env: HubEnv) -> None:
    """Killed while its commit is in flight (the xorbs have landed in storage): the rerun
    sends no content again and makes the one commit."""
    out = tmp_path / "staged"
    staged(arc_repo, arc_tree, out, hub_env, "--max-shard-size", "40KB")
    hub_server.faults.add("delay", path=r"/commit/", method="POST", seconds=30)
    proc = subprocess.Popen([sys.executable, "push.py", "--no-progress", "--out", str(out),
                             "--repo-id", REPO, "--upload-only"], cwd=arc_repo,
                            env=hub_env.subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            r["route"] == "commit" for r in hub_server.requests()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    landed = hub_server.stats(REPO).get("bytes_stored", 0)
    assert landed > 0, "killed before any content reached storage"
    hub_server.faults.clear()
    hub_server.reset_stats()
    resumed = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only")
    assert resumed.returncode == 0, resumed.stderr
    stats = hub_server.stats(REPO)
    assert stats.get("xet_xorb_bytes_uploaded", 0) == 0, "content that had landed was re-sent"
    assert stats["commits"] == 1
    assert re.search(r"ok\s+remote files match manifest", resumed.stderr)


def test_a_stalled_listing_is_cut_by_http_timeout(arc_repo: Path, arc_tree: Path,
                                                  tmp_path: Path, hub_server: HubServer,
                                                  hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    staged(arc_repo, arc_tree, out, hub_env)
    hub_server.faults.add("delay", path=r"/tree/", seconds=60, times=1)
    t0 = time.monotonic()
    done = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only",
                "--http-timeout", "2")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 40, "the stalled listing was waited out"
    assert re.search(r"(timed out|Timeout).*tree/main", done.stderr)


def test_full_remote_check_retries_a_503(arc_repo: Path, arc_tree: Path, tmp_path: Path,
                                         hub_server: HubServer, hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    staged(arc_repo, arc_tree, out, hub_env, "--repo-id", REPO)
    hub_server.faults.add("status", path=r"/resolve/", method="GET", status=503, times=1)
    done = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--verify-only",
                "--verify-remote", "full")
    assert done.returncode == 0, done.stderr
    assert "HTTP 503; retrying" in done.stderr and "Traceback" not in done.stderr


def test_a_full_storage_quota_is_named(arc_repo: Path, arc_tree: Path, tmp_path: Path,
                                       hub_server: HubServer, hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    staged(arc_repo, arc_tree, out, hub_env)
    hub_server.faults.add("quota", path=r"/commit/", method="POST", times=None)
    done = push(arc_repo, hub_env, "--out", str(out), "--repo-id", REPO, "--upload-only")
    assert done.returncode == 3
    assert "the Hub's storage limit is reached" in done.stderr
    assert "write access" not in done.stderr


def test_no_progress_silences_the_upload_bars_too(arc_repo: Path, arc_tree: Path,
                                                  tmp_path: Path, hub_env: HubEnv) -> None:
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out",
                str(tmp_path / "staged"), "--repo-id", REPO)
    assert done.returncode == 0, done.stderr
    assert not re.search(r"\d+%\|", done.stderr), done.stderr


def test_gating_asked_by_the_card_is_set_and_checked(arc_repo: Path, arc_tree: Path,
                                                     tmp_path: Path, hub_env: HubEnv) -> None:
    module = arc_repo / "arc.py"
    module.write_text(module.read_text().replace("HF_REPO_ID = ",
                                                 "GATED = True\n    HF_REPO_ID = "))
    done = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out",
                str(tmp_path / "staged"), "--repo-id", REPO)
    assert done.returncode == 0, done.stderr
    assert HfApi().dataset_info(REPO).gated == "auto"
    assert re.search(r"ok\s+repo gated as the card asks", done.stderr)


def test_the_card_names_the_repo_it_is_uploaded_to(arc_repo: Path, arc_tree: Path,
                                                   tmp_path: Path, hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    staged(arc_repo, arc_tree, out, hub_env, "--repo-id", "test-org/first")
    done = push(arc_repo, hub_env, "--out", str(out), "--repo-id", "test-org/second",
                "--upload-only")
    assert done.returncode == 0, done.stderr
    card = Path(hf_hub_download("test-org/second", "README.md", repo_type="dataset")).read_text()
    assert 'load_dataset("test-org/second"' in card and "test-org/first" not in card


def test_a_card_with_placeholder_prose_is_warned_before_upload(
        arc_repo: Path, arc_tree: Path, tmp_path: Path, hub_env: HubEnv) -> None:
    out = tmp_path / "staged"
    first = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                 "--repo-id", REPO)
    assert first.returncode == 0, first.stderr
    assert "warning: the dataset card still says 'Describe the cohort" in first.stderr
    # The maintainer writes the prose, runs the same command: only the card is sent.
    readme = arc_repo / "README.md"
    readme.write_text(readme.read_text().replace(
        "Describe the cohort, the acquisition, preprocessing of derivatives and the intended use.",
        "T1w, T2w, BOLD and DWI of people with chronic aphasia after a stroke."))
    again = push(arc_repo, hub_env, "--bids-root", str(arc_tree), "--out", str(out),
                 "--repo-id", REPO)
    assert again.returncode == 0, again.stderr
    assert "still says" not in again.stderr
    assert "uploaded 1 file(s)" in again.stderr
    card = Path(hf_hub_download(REPO, "README.md", repo_type="dataset")).read_text()
    assert "people with chronic aphasia" in card


@pytest.fixture(scope="module")
def medium_arc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_arc(tmp_path_factory.mktemp("medium") / "arc", subjects=8, max_sessions=2,
                    shape=(64, 64, 48), volumes=8)


@pytest.mark.slow
def test_a_republish_over_xet_sends_only_what_changed(arc_repo: Path, medium_arc: Path,
                                                      tmp_path: Path, hub_server: HubServer,
                                                      hub_env: HubEnv) -> None:
    """benchmarks/bench_republish.py at test scale: a typo fixed in participants.tsv sends
    <= 1% of the dataset; a subject added sends <= 1.5x its images + 1 MB, counting its
    images once per file that holds them (the full table, and the `anat` config's copy of its
    anatomical images: one commit's files barely deduplicate against each other)."""
    import shutil

    tree = Path(shutil.copytree(medium_arc, tmp_path / "arc"))
    subjects = sorted(p.name for p in tree.glob("sub-*"))
    subject = subjects[len(subjects) // 2]
    lesions = list((tree / "derivatives").rglob(f"{subject}/**/*.nii*"))
    anat = [*(tree / subject).rglob("anat/*.nii*"), *lesions]
    added = sum(p.stat().st_size for p in [*(tree / subject).rglob("*.nii*"), *lesions]) + sum(
        p.stat().st_size for p in anat)
    aside = tmp_path / "aside"
    aside.mkdir()
    withhold(tree, subject, aside)
    total = sum(p.stat().st_size for p in tree.rglob("*.nii*"))
    out = tmp_path / "staged"
    # Files small against a subject, as they are at scale (32 MB files, 90 MB subjects).
    sizes = ("--max-shard-size", "4MB")
    first = push(arc_repo, hub_env, "--bids-root", str(tree), "--out", str(out), "--repo-id", REPO,
                 *sizes)
    assert first.returncode == 0, first.stderr
    hub_server.reset_stats()
    change_one_value(tree)
    again = push(arc_repo, hub_env, "--bids-root", str(tree), "--out", str(out), "--repo-id", REPO,
                 *sizes)
    assert again.returncode == 0, again.stderr
    assert 0 < hub_server.stats(REPO)["bytes_stored"] <= total / 100
    hub_server.reset_stats()
    restore(tree, subject, aside)
    more = push(arc_repo, hub_env, "--bids-root", str(tree), "--out", str(out), "--repo-id", REPO,
                *sizes)
    assert more.returncode == 0, more.stderr
    assert added <= hub_server.stats(REPO)["bytes_stored"] <= 1.5 * added + 1e6


@pytest.mark.parametrize("streaming", [False, True])
def test_a_config_downloads_only_its_own_bytes(arc_repo: Path, medium_arc: Path, tmp_path: Path,
                                               hub_server: HubServer, hub_env: HubEnv,
                                               streaming: bool) -> None:
    """The ARC schema's `anat` config (T1w, T2w, FLAIR, lesion, three metadata columns) has
    files of its own: a consumer loading it gets those bytes, not the DWI and BOLD ones."""
    import datasets

    out = tmp_path / "staged"
    staged(arc_repo, medium_arc, out, hub_env, "--repo-id", REPO)
    own = sum(p.stat().st_size for p in (out / "data" / "anat").glob("*.parquet"))
    everything = sum(p.stat().st_size for p in (out / "data").rglob("*.parquet"))
    assert own < everything / 3
    hub_server.reset_stats()
    ds = datasets.load_dataset(REPO, "anat", split="train", streaming=streaming)
    rows = sum(1 for _ in ds.decode(False)) if streaming else len(ds)
    assert rows == len(list((medium_arc).glob("sub-*/ses-*")))
    assert set(ds.features) >= {"t1w", "lesion"} and "dwi" not in ds.features
    sent = hub_server.stats(REPO)["download_bytes_sent"]
    card = (out / "README.md").stat().st_size
    # Xet sends chunks compressed, so a little less than the files' size is normal.
    assert 0.5 * own <= sent <= 1.2 * own + card + 200_000, (sent, own)
