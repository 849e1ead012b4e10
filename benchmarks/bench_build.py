"""Build speed and memory: bids_hf's shard build vs datasets' push path vs ``cp -r``, one run.

    python -m benchmarks.bench_build [--sessions 80] [--shape 128 128 96] [--scale 4]

Generates an ARC-shaped tree of real NIfTI files (default ~2.5 GB), then runs, each in a
fresh process with the tree evicted from the page cache first (cold reads for everyone):

* ``cp -r`` of the tree: the floor for reading and writing every byte once, without and
  with ``sync`` (our shards are fsynced before they count as written);
* bids_hf: index -> rows -> plan -> shards + card (what push.py does between its checks),
  with 1 and 2 processes;
* datasets 5.2 ``Dataset._push_parquet_shards_to_hub`` with the network stubbed (only
  ``HfApi.preupload_lfs_files`` replaced), automatic sharding and hand-tuned ``num_shards``;
* bids_hf again on a tree 4x larger (hard links, so no extra disk), to show memory does not
  grow with the dataset.

Each pipeline runs ``--repeat`` times; the median wall time and the largest peak RSS (sum
over the process tree, sampled every 20 ms) are printed with ratios. Targets: ours <= 0.5x hand-tuned datasets and <= 2x cp -r; peak RSS <= 300 MB and
within 10% on the 4x tree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

# -- the measured workloads (run in child processes) ----------------------------------------


def run_ours(tree: Path, out: Path, num_proc: int) -> dict:
    from bids_hf import assemble_rows, index_bids, plan_shards, stage
    from bids_hf._card import CardMeta

    from examples.schemas.arc import SCHEMA

    rowset = assemble_rows(index_bids(tree), SCHEMA)
    plan = plan_shards(rowset)
    manifest = stage(rowset, plan, out, CardMeta(slug="bench"), num_proc=num_proc,
                     progress=False)
    return {"shards": len(manifest.shards), "bytes": sum(s["size"] for s in manifest.shards)}


def run_datasets(tree: Path, num_shards: int | None) -> dict:
    """datasets' own push shard path on the same rows (file paths; it embeds the bytes)."""
    from unittest import mock

    import datasets
    from bids_hf import from_bids
    from huggingface_hub import HfApi
    from huggingface_hub.hf_file_system import HfFileSystemResolvedRepositoryPath

    from examples.schemas.arc import SCHEMA

    ds = from_bids(tree, SCHEMA)  # the same rows as ours, image cells as file paths
    written: list[int] = []
    real_to_parquet = datasets.Dataset.to_parquet

    def to_parquet(self, path_or_buf, *args, **kwargs):  # record sizes of the shards it writes
        n = real_to_parquet(self, path_or_buf, *args, **kwargs)
        written.append(os.fstat(path_or_buf.fileno()).st_size)
        return n

    target = HfFileSystemResolvedRepositoryPath(
        repo_type="dataset", repo_id="bench/bench", revision="main", path_in_repo="")
    with mock.patch.object(HfApi, "preupload_lfs_files", lambda *a, **k: None), \
            mock.patch.object(datasets.Dataset, "to_parquet", to_parquet):
        ds._push_parquet_shards_to_hub(
            target, data_dir="data", split="train", token=None, create_pr=False,
            max_shard_size=None, num_shards=num_shards, embed_external_files=True, num_proc=None)
    return {"shards": len(written), "bytes": sum(written)}


def run_cp(tree: Path, out: Path, sync: bool) -> dict:
    subprocess.run(["cp", "-r", str(tree), str(out)], check=True)
    if sync:  # as durable as our fsync'd shards
        subprocess.run(["sync"], check=True)
    return {"shards": 0, "bytes": 0}


def child_main(spec: dict) -> None:
    tree, out = Path(spec["tree"]), Path(spec["out"])
    kind = spec["kind"]
    if kind == "ours":
        result = run_ours(tree, out, spec.get("num_proc", 1))
    elif kind == "datasets":
        result = run_datasets(tree, spec.get("num_shards"))
    else:
        result = run_cp(tree, out, spec.get("sync", False))
    print(json.dumps(result))


# -- measuring ------------------------------------------------------------------------------


def evict(tree: Path) -> None:
    """Drop the tree's pages from the page cache so every run reads cold."""
    for folder, _, names in os.walk(tree):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# push.py sets this before pyarrow loads (see its comment); every Python child gets it, so
# the allocator is not a difference between the pipelines compared.
CHILD_ENV = {**os.environ, "MIMALLOC_PURGE_DELAY": "0"}


def measure(label: str, spec: dict, tree: Path, repeat: int) -> dict:
    """Median wall time and largest peak RSS over ``repeat`` cold runs."""
    runs = [_measure_once(spec, tree) for _ in range(repeat)]
    walls = sorted(r["wall"] for r in runs)
    result = {**runs[0], "label": label, "wall": walls[len(walls) // 2],
              "walls": walls, "rss": max(r["rss"] for r in runs)}
    print(f"  {label}: {' / '.join(f'{w:.1f}' for w in walls)} s, peak RSS "
          f"{result['rss'] / 2**20:.0f} MB, {result['shards']} shards", flush=True)
    return result


def _measure_once(spec: dict, tree: Path) -> dict:
    evict(tree)
    out = Path(spec["out"])
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_build", "--child",
                             json.dumps(spec)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent, env=CHILD_ENV)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    stdout = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"{spec} failed with exit code {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    if out.exists():
        shutil.rmtree(out)
    return {"wall": wall, "rss": peak, **result}


def tree_bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def scaled_copy(tree: Path, dest: Path, factor: int) -> Path:
    """``factor`` copies of every subject under new labels, as hard links (no extra disk)."""
    subjects = [p.name for p in tree.iterdir() if p.name.startswith("sub-")]
    for folder, _, names in os.walk(tree):
        rel = Path(folder).relative_to(tree)
        for name in names:
            src = Path(folder) / name
            for k in range(factor):
                target_rel = str(rel / name)
                for sub in subjects:
                    target_rel = target_rel.replace(sub, f"{sub}x{k}")
                target = dest / target_rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if name == "participants.tsv":
                    continue
                if not target.exists():
                    os.link(src, target)
    lines = (tree / "participants.tsv").read_text().splitlines()
    rows = [ln.replace(ln.split("\t")[0], f"{ln.split(chr(9))[0]}x{k}")
            for k in range(factor) for ln in lines[1:]]
    (dest / "participants.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=80, help="approximate sessions")
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 96))
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4, help="size factor of the memory check")
    parser.add_argument("--repeat", type=int, default=3, help="runs per pipeline (median wall)")
    parser.add_argument("--workdir", type=Path, help="keep trees here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    from examples.cohorts import make_arc

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        tree = work / "arc"
        if not tree.exists():
            t = time.perf_counter()
            make_arc(tree, subjects=max(1, args.sessions // 2), max_sessions=3,
                     shape=tuple(args.shape), volumes=args.volumes)
            print(f"generated {tree} in {time.perf_counter() - t:.0f} s")
        size = tree_bytes(tree)
        n_nifti = sum(1 for _ in tree.rglob("*.nii.gz"))
        n_sessions = sum(1 for _ in tree.glob("sub-*/ses-*"))
        print(f"tree: {size / 1e9:.2f} GB, {n_nifti} NIfTI, {n_sessions} sessions; "
              f"{os.cpu_count()} cores")
        tuned = max(1, math.ceil(size / 130e6))
        out = str(work / "out")

        def run(label: str, on: Path = tree, **spec: object) -> dict:
            return measure(label, {"tree": str(on), "out": out, **spec}, on, args.repeat)

        runs = [
            run("cp -r (cold)", kind="cp"),
            run("cp -r + sync (cold)", kind="cp", sync=True),
            run("bids_hf build", kind="ours"),
            run("bids_hf build --num-proc 2", kind="ours", num_proc=2),
            run("datasets push path, automatic", kind="datasets"),
            run(f"datasets push path, num_shards={tuned}", kind="datasets", num_shards=tuned),
        ]
        big = work / f"arc-x{args.scale}"
        if not big.exists():
            scaled_copy(tree, big, args.scale)
        runs.append(run(f"bids_hf build, tree x{args.scale} ({tree_bytes(big) / 1e9:.1f} GB)",
                        on=big, kind="ours"))
        by = {r["label"]: r for r in runs}
        cp, ours = by["cp -r (cold)"], by["bids_hf build"]
        cp_sync = by["cp -r + sync (cold)"]
        tuned_run = by[f"datasets push path, num_shards={tuned}"]
        print()
        print("| pipeline | wall | peak RSS | shards | wall vs bids_hf |")
        print("|---|---|---|---|---|")
        for r in runs:
            shards = "—" if r["label"].startswith("cp") else str(r["shards"])
            print(f"| {r['label']} | {r['wall']:.1f} s | {r['rss'] / 2**20:.0f} MB | {shards} "
                  f"| {r['wall'] / ours['wall']:.2f}x |")
        big_run = runs[-1]
        checks = [
            ("wall <= 0.5x hand-tuned datasets", ours["wall"] / tuned_run["wall"], 0.5),
            ("wall <= 2x cp -r (cold)", ours["wall"] / cp["wall"], 2.0),
            ("wall <= 2x cp -r + sync (cold, same durability)", ours["wall"] / cp_sync["wall"], 2.0),
            ("peak RSS <= 300 MB", ours["rss"] / 2**20, 300),
            (f"peak RSS on x{args.scale} tree within 10%", abs(big_run["rss"] / ours["rss"] - 1), 0.10),
        ]
        print()
        for name, value, limit in checks:
            print(f"{'met   ' if value <= limit else 'MISSED'} {name}: {value:.2f}")
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
