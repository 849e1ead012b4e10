"""The shard engine: atomic and resumable writes, parallel and job-array builds that give
byte-identical output, and memory bounded by the row group."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from bids_hf import Manifest, Options, PlanError, collect, stage, verify_staged
from bids_hf._card import CardMeta
from bids_hf._plan import plan_shards
from bids_hf._shards import build_shards
from bids_hf.testing import write_nifti
from conftest import load_schema, run_push

from examples.cohorts import make_arc

SMALL = {"max_shard_size": "40KB", "row_group_size": "15KB"}


def digests(out: Path) -> dict[str, str]:
    """sha256 of everything that would be uploaded (shards and card)."""
    files = [*sorted(p for p in (out / "data").rglob("*") if p.is_file()), out / "README.md"]
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "data").glob("*.parquet")}


def build(root: Path, out: Path, schema=None, cpus: int = 1, **sizes: str):
    """The pipeline's stage step, as push.py runs it; the folder must verify."""
    rowset = collect(root, schema or load_schema("arc"))
    options = Options(progress=False, bids_validator=False, num_proc=cpus, **(sizes or SMALL))
    staged = stage(rowset, out, CardMeta(slug="arc"), options)
    assert staged.ok, staged.checks.summary() + staged.verification.summary()
    return rowset, staged.plan, staged.manifest


@pytest.fixture(scope="module")
def reference(arc_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted build of the ARC tree, to compare every other build with."""
    out = tmp_path_factory.mktemp("reference") / "staged"
    build(arc_tree, out)
    return out


def test_two_builds_are_byte_identical_and_a_rerun_rewrites_nothing(
        arc_tree: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    build(arc_tree, out)
    assert digests(out) == digests(reference)
    before = mtimes(out)
    build(arc_tree, out)
    assert mtimes(out) == before, "a rerun with nothing changed rewrote shards"


@pytest.mark.parametrize("cpus", [2, 6])
def test_parallel_build_is_byte_identical(arc_tree: Path, reference: Path, tmp_path: Path,
                                          cpus: int) -> None:
    """Two CPUs: threads in one process; six: two writer processes with three threads."""
    out = tmp_path / "staged"
    build(arc_tree, out, cpus=cpus)
    assert digests(out) == digests(reference)


def test_truncated_shard_is_detected_and_rebuilt_alone(
        arc_tree: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    build(arc_tree, out)
    victim = sorted((out / "data").glob("*.parquet"))[1]
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 2)
    before = mtimes(out)
    build(arc_tree, out)
    after = mtimes(out)
    assert [n for n in after if after[n] != before[n]] == [victim.name]
    assert digests(out) == digests(reference)


def test_shard_corrupted_in_place_is_found_and_rebuilt_by_the_next_run(
        arc_tree: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    rowset, plan, _ = build(arc_tree, out)
    victim = min((out / "data").glob("*.parquet"))
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size; mtime restored below
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = verify_staged(out, rowset, plan, Manifest.read(out), rehash=True)
    assert not result.all_passed
    assert f"data/{victim.name}: sha256 differs from the manifest" in result.summary()
    before = mtimes(out)
    build(arc_tree, out)  # the rerun hashes each shard before reusing it
    after = mtimes(out)
    assert [n for n in after if after[n] != before[n]] == [victim.name]
    assert verify_staged(out, rowset, plan, Manifest.read(out), rehash=True).all_passed
    assert digests(out) == digests(reference)


def same_size_other_image(path: Path) -> None:
    """Rewrite an uncompressed .nii in place with a different image of the same size, and
    give it back its mtime: what a careless tool or a sync can do."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x7F  # a voxel of the image data
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_source_rewritten_with_the_same_size_and_mtime_gets_its_shard_rebuilt(
        arc_copy: Path, tmp_path: Path) -> None:
    first = min(arc_copy.glob("sub-*/ses-*/anat"))
    extra = write_nifti(first / f"{first.parent.parent.name}_{first.parent.name}_run-9_T1w.nii",
                        (10, 10, 8))
    rel = extra.relative_to(arc_copy).as_posix()
    out = tmp_path / "staged"
    _, _, manifest = build(arc_copy, out)
    same_size_other_image(extra)
    shard = next(Path(s["name"]).name for s in manifest.shards if rel in s["sources"])
    before = mtimes(out)
    _, _, again = build(arc_copy, out)
    after = mtimes(out)
    assert [n for n in after if after[n] != before[n]] == [shard], "only its shard is rebuilt"
    assert again.sources[rel] == hashlib.sha256((arc_copy / rel).read_bytes()).hexdigest()
    fresh = tmp_path / "fresh"
    build(arc_copy, fresh)
    assert digests(out) == digests(fresh)


def test_schema_change_invalidates_every_shard(arc_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    schema = load_schema("arc")
    build(arc_tree, out, schema)
    before = mtimes(out)
    changed = replace(schema, metadata={"participants.tsv": {"age_at_stroke": "float64"}},
                      configs={})
    build(arc_tree, out, changed)
    after = mtimes(out)
    assert before.keys() == after.keys() and all(after[n] != before[n] for n in before)
    fresh = tmp_path / "fresh"
    build(arc_tree, fresh, changed)
    assert digests(out) == digests(fresh)
    assert pq.read_schema(next((out / "data").glob("*.parquet"))).field(
        "age_at_stroke").type == "double"


def test_a_new_plan_removes_shards_of_the_old_one(arc_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    build(arc_tree, out)
    many_shards = set(mtimes(out))
    build(arc_tree, out, max_shard_size="1GB", row_group_size="64MB")
    assert set(mtimes(out)) == {"train-00000-of-00001.parquet"}
    assert many_shards.isdisjoint(mtimes(out))
    assert not list((out / "data").glob(".*"))


# -- crash and job arrays, through the generated repo's push.py -----------------------------


@pytest.fixture(scope="module")
def bigger_arc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough that a build takes a moment (so it can be killed mid-shard)."""
    return make_arc(tmp_path_factory.mktemp("bigger") / "ds", subjects=6,
                    shape=(40, 40, 28), volumes=8)


PUSH_SMALL = ["--no-progress", "--no-integrity", "--max-shard-size", "1MB",
              "--row-group-size", "200KB"]


def push(arc_repo: Path, *args: str,
         sizes: list[str] = PUSH_SMALL) -> subprocess.CompletedProcess[str]:
    return run_push(arc_repo, *sizes, *args)


@pytest.mark.slow
def test_sigkill_mid_shard_then_rerun_gives_byte_identical_output(
        arc_repo: Path, bigger_arc: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert push(arc_repo, "--bids-root", str(bigger_arc), "--out", str(reference)).returncode == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "push.py", *PUSH_SMALL, "--bids-root",
                             str(bigger_arc), "--out", str(out)], cwd=arc_repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data, records = out / "data", out / ".bids_hf" / "shards"
    deadline = time.monotonic() + 120
    # Kill once at least one shard is recorded and the next one is half-written.
    while time.monotonic() < deadline and proc.poll() is None:
        tmps = [p for p in data.glob(".*.tmp") if p.stat().st_size > 0] if data.exists() else []
        if tmps and records.exists() and list(records.glob("*.json")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the build finished before it was killed"
    assert list(data.glob("*.parquet")) and list(data.glob(".*.tmp")), "not killed mid-shard"
    # A shard counts as finished once its record is written (a kill between its rename and
    # its record leaves it unknown, and it is rebuilt).
    recorded = {p.stem for p in records.glob("*.json")}
    finished = {n: t for n, t in mtimes(out).items() if Path(n).stem in recorded}
    assert finished
    total = len(list((reference / "data").glob("*.parquet")))
    assert len(finished) < total

    rerun = push(arc_repo, "--bids-root", str(bigger_arc), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert digests(out) == digests(reference)
    assert all(mtimes(out)[n] == t for n, t in finished.items()), \
        "shards finished before the kill were rewritten"
    assert not list(data.glob(".*"))


@pytest.mark.slow
def test_array_task_refuses_a_plan_made_from_other_data(arc_repo: Path, arc_copy: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "array"
    planned = push(arc_repo, "--bids-root", str(arc_copy), "--out", str(out), "--plan-only")
    assert planned.returncode == 0
    next(arc_copy.rglob("*_T1w.nii.gz")).write_bytes(
        next(arc_copy.rglob("*_T2w.nii.gz")).read_bytes())
    done = push(arc_repo, "--bids-root", str(arc_copy), "--out", str(out), "--shards", "0")
    assert done.returncode == 2
    assert "changed since" in done.stderr and "--plan-only" in done.stderr


def test_build_only_a_subset_leaves_the_rest(arc_tree: Path, tmp_path: Path) -> None:
    rowset = collect(arc_tree, load_schema("arc"))
    plan = plan_shards(rowset, **SMALL)
    out = tmp_path / "staged"
    built = build_shards(rowset, plan, out, only=plan.select("1-2"), progress=False, cpus=1)
    assert sorted(built.records) == [plan.shards[1].name, plan.shards[2].name]
    assert sorted(mtimes(out)) == sorted(Path(s.name).name for s in plan.shards[1:3])
    assert plan.select(f"1-{len(plan.shards) + 5}") == list(plan.shards[1:])  # arrays overshoot
    with pytest.raises(PlanError, match="the plan has shards 0-"):
        plan.select(f"{len(plan.shards)}-{len(plan.shards) + 3}")
