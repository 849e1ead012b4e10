"""The whole job a user waits for, against the alternatives, side by side, paired.

    python -m benchmarks.bench_build [--subjects 30] [--shape 128 128 96] [--pairs 3] [--scale 4]

Generates an ARC-shaped tree of real NIfTI files (default about 1.4 GB: 30 subjects x up to 2
sessions), bakes the template with the reference ARC schema, then measures, each run in a
fresh process:

* **whole job**: the generated repo's ``push.py --bids-root T --out O`` with default flags:
  index, checks, the single pass (read, hash, inflate in full, scan, embed, read back), card,
  manifest, verification, and the official BIDS validator when installed;
* **datasets' push path, hand-tuned**: ``Dataset._push_parquet_shards_to_hub`` of datasets 5.2
  on the same rows with ``num_shards`` set by hand (its automatic sizing makes one shard of
  the whole tree), the upload stubbed: it only builds, checks nothing;
* **cp -r + sync**: the floor for reading and writing every byte once, durably;
* **shards only**: bids_hf's build step alone (the single pass, no checks, card or validator),
  the figure earlier versions quoted;
* the whole job on the tree x``--scale`` (hard links, no extra disk), to show memory is flat;
* a **rerun** with nothing changed: what content-safe reuse (sources and shards re-hashed
  against their records) costs.

Whole job and datasets' path run warm (the tree in the page cache, as on a second run);
whole job and ``cp -r + sync`` also run cold (the tree evicted first). Runs are paired: each
pair runs both pipelines back to back, alternating which goes first, and the ratio is taken
within the pair; the table shows medians. Peak RSS is per process (the largest over every
process of the run); CPU is user + system seconds of the whole process tree.
Targets: whole job <= 1.0x datasets (warm) and <= 2.5x cp -r + sync (cold); peak RSS of every
process <= 300 MB, within 10% on the x4 tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent

# -- the measured workloads (run in child processes) ----------------------------------------


def run_datasets(tree: Path, num_shards: int) -> dict:
    """datasets' own push shard path on the same rows (file paths; it embeds the bytes)."""
    from unittest import mock

    import datasets
    from bids_hf import from_bids
    from huggingface_hub import HfApi
    from huggingface_hub.hf_file_system import HfFileSystemResolvedRepositoryPath

    from examples.schemas.arc import SCHEMA

    ds = datasets.Dataset.from_dict(from_bids(tree, SCHEMA).to_dict(),  # a plain Dataset
                                    features=from_bids(tree, SCHEMA).features)
    target = HfFileSystemResolvedRepositoryPath(
        repo_type="dataset", repo_id="bench/bench", revision="main", path_in_repo="")
    with mock.patch.object(HfApi, "preupload_lfs_files", lambda *a, **k: None):
        ds._push_parquet_shards_to_hub(
            target, data_dir="data", split="train", token=None, create_pr=False,
            max_shard_size=None, num_shards=num_shards, embed_external_files=True, num_proc=None)
    return {}


def run_shards_only(tree: Path, out: Path) -> dict:
    from bids_hf import collect
    from bids_hf._plan import plan_shards
    from bids_hf._shards import build_shards

    from examples.schemas.arc import SCHEMA

    rowset = collect(tree, SCHEMA)
    built = build_shards(rowset, plan_shards(rowset), out, progress=False)
    return {"shards": len(built.records)}


def child_main(spec: dict) -> None:
    sys.path.insert(0, str(ROOT))
    import examples  # noqa: F401  (puts the vendored core on the path)

    tree = Path(spec["tree"])
    if spec["kind"] == "datasets":
        result = run_datasets(tree, spec["num_shards"])
    else:
        result = run_shards_only(tree, Path(spec["out"]))
    print(json.dumps(result))


# -- measuring ------------------------------------------------------------------------------


def evict(tree: Path) -> None:
    """Drop the tree's pages from the page cache so the next run reads cold."""
    for folder, _, names in os.walk(tree):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm(tree: Path) -> None:
    for path in tree.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass


# push.py sets this before pyarrow loads; every Python child gets it, so the allocator is
# not a difference between the pipelines compared.
CHILD_ENV = {**os.environ, "MIMALLOC_PURGE_DELAY": "0", "HF_DATASETS_OFFLINE": "1"}


def measure(cmd: list[str], cwd: Path, out: Path | None, *, fresh: bool = True) -> dict:
    """Wall time, CPU seconds of the process tree, and the largest peak RSS of any one of
    its processes (sampled every 10 ms; cross-checked with the kernel's ru_maxrss). ``out``
    is removed afterwards, and before too when ``fresh`` (else the run finds what the
    previous one staged)."""
    if fresh and out is not None and out.exists():
        shutil.rmtree(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=CHILD_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a child that just exited
                    peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss is the largest of all waited-for descendants (KB), a floor for our sampling.
    rss = max(max(peaks.values(), default=0), after.ru_maxrss * 1024
              if after.ru_maxrss > before.ru_maxrss else 0)
    if out is not None and out.exists():
        shutil.rmtree(out)
    return {"wall": wall, "cpu": cpu, "rss": rss, "stdout": stdout}


def python_child(spec: dict) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_build", "--child", json.dumps(spec)]


def tree_bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def arc_tree(work: Path, *, subjects: int, max_sessions: int, shape: tuple[int, int, int],
             volumes: int) -> Path:
    """The ARC-shaped tree of real NIfTI files under ``work``, generated once and reused."""
    from examples.cohorts import make_arc

    tree = work / "arc"
    if not tree.exists():
        t = time.perf_counter()
        make_arc(tree, subjects=subjects, max_sessions=max_sessions, shape=shape,
                 volumes=volumes)
        print(f"generated {tree} in {time.perf_counter() - t:.0f} s")
    return tree


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


def bake(work: Path) -> Path:
    from cookiecutter.main import cookiecutter

    repo = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(work / "baked"),
                             overwrite_if_exists=True,
                             extra_context={"dataset_name": "ARC", "dataset_slug": "arc"}))
    shutil.copy(ROOT / "examples" / "schemas" / "arc.py", repo / "schema.py")
    return repo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=2, help="most sessions per subject")
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 96))
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4, help="size factor of the memory check")
    parser.add_argument("--pairs", type=int, default=3, help="paired runs per comparison")
    parser.add_argument("--workdir", type=Path, help="keep trees here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    sys.path.insert(0, str(ROOT))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-build-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tree = arc_tree(work, subjects=args.subjects, max_sessions=args.sessions,
                        shape=tuple(args.shape), volumes=args.volumes)
        size = tree_bytes(tree)
        print(f"tree: {size / 1e9:.2f} GB, {sum(1 for _ in tree.rglob('*.nii.gz'))} NIfTI, "
              f"{sum(1 for _ in tree.glob('sub-*/ses-*'))} sessions; {os.cpu_count()} CPUs")
        repo = bake(work)
        out = work / "out"
        tuned = max(1, math.ceil(size / 130e6))  # datasets' shards by hand, ~130 MB each

        def whole(on: Path = tree) -> list[str]:
            return [sys.executable, "push.py", "--bids-root", str(on), "--out", str(out),
                    "--no-progress"]

        def datasets_run() -> dict:
            return measure(python_child({"kind": "datasets", "tree": str(tree),
                                         "num_shards": tuned}), ROOT, None)

        def shards_only() -> dict:
            return measure(python_child({"kind": "shards", "tree": str(tree), "out": str(out)}),
                           ROOT, out)

        def cp_sync() -> dict:
            return measure(["sh", "-c", f"cp -r '{tree}' '{out}' && sync"], ROOT, out)

        runs: dict[str, list[dict]] = {k: [] for k in (
            "whole_warm", "datasets", "whole_cold", "cp_sync", "shards_only")}
        ratios: dict[str, list[float]] = {"datasets": [], "cp_sync": []}
        for i in range(args.pairs):
            warm(tree)
            pair = [("whole_warm", lambda: measure(whole(), repo, out)),
                    ("datasets", datasets_run)]
            for name, fn in (pair if i % 2 == 0 else pair[::-1]):
                warm(tree)
                runs[name].append(fn())
            ratios["datasets"].append(runs["whole_warm"][-1]["wall"] / runs["datasets"][-1]["wall"])
            pair = [("whole_cold", lambda: measure(whole(), repo, out)), ("cp_sync", cp_sync)]
            for name, fn in (pair if i % 2 == 0 else pair[::-1]):
                evict(tree)
                runs[name].append(fn())
            ratios["cp_sync"].append(runs["whole_cold"][-1]["wall"] / runs["cp_sync"][-1]["wall"])
            warm(tree)
            runs["shards_only"].append(shards_only())
            print(f"  pair {i + 1}: whole/datasets {ratios['datasets'][-1]:.2f}x, "
                  f"whole/cp+sync {ratios['cp_sync'][-1]:.2f}x", flush=True)
        big = work / f"arc-x{args.scale}"
        if not big.exists():
            scaled_copy(tree, big, args.scale)
        warm(big)
        runs["whole_big"] = [measure(whole(big), repo, out)]
        # A rerun with nothing changed: every shard is reused once its sources and its own
        # bytes hash to their records (content-safe reuse), then the folder is verified again.
        warm(tree)
        runs["rerun"] = []
        for _ in range(args.pairs):
            subprocess.run(whole(), cwd=repo, env=CHILD_ENV, check=True, capture_output=True)
            runs["rerun"].append(measure(whole(), repo, out, fresh=False))

        def med(name: str, key: str) -> float:
            return statistics.median(r[key] for r in runs[name])

        mb = 2**20
        labels = {
            "whole_warm": "bids_hf whole job: push.py --out (warm)",
            "datasets": f"datasets push path, num_shards={tuned} by hand (warm, builds only)",
            "whole_cold": "bids_hf whole job: push.py --out (cold)",
            "cp_sync": "cp -r + sync (cold)",
            "shards_only": "bids_hf shards only (warm)",
            "whole_big": f"bids_hf whole job, tree x{args.scale} "
                         f"({tree_bytes(big) / 1e9:.1f} GB, warm)",
            "rerun": "bids_hf rerun, nothing changed: every shard re-hashed and reused (warm)",
        }
        print()
        print("| pipeline | wall (median) | CPU s | peak RSS, largest process |")
        print("|---|---|---|---|")
        for name, label in labels.items():
            print(f"| {label} | {med(name, 'wall'):.1f} s | {med(name, 'cpu'):.1f} | "
                  f"{max(r['rss'] for r in runs[name]) / mb:.0f} MB |")
        rss = max(r["rss"] for name in ("whole_warm", "whole_cold") for r in runs[name])
        big_rss = runs["whole_big"][0]["rss"]
        checks = [
            ("whole job <= 1.0x datasets' hand-tuned push path (warm, paired median)",
             statistics.median(ratios["datasets"]), 1.0),
            ("whole job <= 2.5x cp -r + sync (cold, paired median)",
             statistics.median(ratios["cp_sync"]), 2.5),
            ("peak RSS of every process <= 300 MB", rss / mb, 300),
            (f"peak RSS on the x{args.scale} tree within 10%", abs(big_rss / rss - 1), 0.10),
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
