"""What a re-publish sends: one value changed in participants.tsv, then one subject added.

    python -m benchmarks.bench_republish [--subjects 20] [--shape 128 128 96] [--volumes 8]

An ARC-shaped tree of real NIfTI files is published with the generated repo's push.py to the
local Hub server (tests/hubserver), once over Xet (what every client with hf_xet uses) and
once over LFS (``HF_HUB_DISABLE_XET=1``). Then, on each transport:

* one value of one subject in participants.tsv changes, and push.py runs again;
* a subject withheld from the first publish (one in the middle of the natural order, so the
  rows after it would move if shard boundaries were not content-defined) is added back, and
  push.py runs again.

"Sent" is what reached the server's storage: new Xet xorb and shard bytes (Xet), or LFS
object bytes plus small files committed as text (LFS). The ideal for a metadata change is
0; for an added subject, its image bytes in every file that holds them (the full table's,
and the ARC schema's `anat` config's copy of its anatomical images: files of one commit
barely deduplicate against each other). Targets: the metadata change sends <= 1% of the
dataset's bytes, the new subject <= 1.5x those bytes + 1 MB.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Hub stand-in


def tree_bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*.nii*") if p.is_file())


def withhold(tree: Path, subject: str, aside: Path) -> None:
    """Move a subject's folders and participants row out of the tree."""
    for folder in (tree / subject, tree / "derivatives" / "lesion_masks" / subject):
        if folder.exists():
            target = aside / folder.relative_to(tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(folder, target)
    rows = (tree / "participants.tsv").read_text().splitlines(keepends=True)
    (aside / "participants.row").write_text(next(r for r in rows if r.startswith(subject)))
    (tree / "participants.tsv").write_text("".join(r for r in rows if not r.startswith(subject)))


def restore(tree: Path, subject: str, aside: Path) -> None:
    for folder in (aside / subject, aside / "derivatives" / "lesion_masks" / subject):
        if folder.exists():
            target = tree / folder.relative_to(aside)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(folder, target)
    rows = (tree / "participants.tsv").read_text().splitlines(keepends=True)
    rows.append((aside / "participants.row").read_text())
    header, body = rows[0], sorted(rows[1:])
    (tree / "participants.tsv").write_text(header + "".join(body))


def change_one_value(tree: Path) -> str:
    """A typo fixed: one subject's wab_aq value changes."""
    path = tree / "participants.tsv"
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    row = rows[len(rows) // 3]
    row["wab_aq"] = "n/a" if row["wab_aq"] != "n/a" else "55.5"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return row["participant_id"]


def bake(work: Path) -> Path:
    from cookiecutter.main import cookiecutter

    repo = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(work / "baked"),
                             overwrite_if_exists=True,
                             extra_context={"dataset_name": "ARC", "dataset_slug": "arc",
                                            "hf_repo_id": "bench/arc"}))
    shutil.copy(ROOT / "examples" / "schemas" / "arc.py", repo / "schema.py")
    return repo


def push(repo: Path, tree: Path, out: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "push.py", "--bids-root", str(tree), "--out", str(out),
                           "--repo-id", "bench/arc", "--no-progress", "--no-bids-validator"],
                          cwd=repo, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"push.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    if os.environ.get("BENCH_VERBOSE"):
        print("   ", next(line for line in done.stderr.splitlines() if line.startswith(("uploaded",
                                                                                      "plan:"))))
        print("   ", next(line for line in done.stderr.splitlines() if line.startswith("uploaded")))
    return time.perf_counter() - t0


def sent(stats: dict[str, int]) -> int:
    return stats.get("bytes_stored", 0)


def run_transport(xet: bool, repo: Path, tree: Path, subject: str, aside: Path, work: Path
                  ) -> dict[str, int | float]:
    from hubserver import HubServer

    token = "hf_bench_" + secrets.token_hex(8)
    name = "xet" if xet else "lfs"
    server = HubServer(work / f"hub-{name}", tokens={token: "bench"}, xet=xet)
    server.start()
    try:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": token,
               "HF_HUB_DISABLE_XET": "0" if xet else "1", "HF_HOME": str(work / f"hf-{name}"),
               "HF_HUB_DISABLE_TELEMETRY": "1", "MIMALLOC_PURGE_DELAY": "0"}
        out = work / f"out-{name}"
        result: dict[str, int | float] = {}
        result["first_s"] = push(repo, tree, out, env)
        result["first"] = sent(server.stats("bench/arc"))
        server.reset_stats()
        backup = (tree / "participants.tsv").read_text()
        change_one_value(tree)
        result["value_s"] = push(repo, tree, out, env)
        result["value"] = sent(server.stats("bench/arc"))
        (tree / "participants.tsv").write_text(backup)
        push(repo, tree, out, env)  # back to the first state
        server.reset_stats()
        restore(tree, subject, aside)
        result["subject_s"] = push(repo, tree, out, env)
        result["subject"] = sent(server.stats("bench/arc"))
        withhold(tree, subject, aside)  # for the next transport
        return result
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 96))
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--workdir", type=Path, help="keep the trees here (default: temp)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from examples.cohorts import make_arc

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-republish-"))
    try:
        tree = work / "arc"
        if not tree.exists():
            make_arc(tree, subjects=args.subjects, max_sessions=2, shape=tuple(args.shape),
                     volumes=args.volumes)
        subjects = sorted(p.name for p in tree.glob("sub-*"))
        subject = subjects[len(subjects) // 2]
        aside = work / "aside"
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        lesions = list((tree / "derivatives" / "lesion_masks" / subject).rglob("*.nii*"))
        own = sum(p.stat().st_size for p in [*(tree / subject).rglob("*.nii*"), *lesions])
        # Its anatomical images are also in the `anat` config's files: counted once per file.
        added = own + sum(p.stat().st_size for p in [*(tree / subject).rglob("anat/*.nii*"),
                                                     *lesions])
        withhold(tree, subject, aside)
        total = tree_bytes(tree)
        print(f"tree: {total / 1e6:.0f} MB of images, {len(subjects) - 1} subjects published "
              f"first; {subject} ({own / 1e6:.1f} MB of images, {added / 1e6:.1f} MB with the "
              "anat config's copy) added later")
        repo = bake(work)
        xet = run_transport(True, repo, tree, subject, aside, work)
        lfs = run_transport(False, repo, tree, subject, aside, work)
        mb = 1e6
        print()
        print("| re-publish after | ideal | Xet: sent | LFS: sent | target (Xet) |")
        print("|---|---|---|---|---|")
        print(f"| first publish | {total / mb:,.1f} MB | {xet['first'] / mb:,.1f} MB | "
              f"{lfs['first'] / mb:,.1f} MB | |")
        print(f"| one value changed in participants.tsv | 0 | {xet['value'] / mb:,.2f} MB "
              f"({xet['value'] / total:.2%}) | {lfs['value'] / mb:,.1f} MB | <= 1% "
              f"({total / 100 / mb:,.1f} MB) |")
        limit = 1.5 * added + 1e6
        print(f"| one subject added | {added / mb:,.1f} MB | {xet['subject'] / mb:,.1f} MB "
              f"({xet['subject'] / added:.2f}x) | {lfs['subject'] / mb:,.1f} MB | "
              f"<= {limit / mb:,.1f} MB |")
        print()
        value_ok = xet["value"] <= total / 100
        subject_ok = xet["subject"] <= limit
        print(f"{'met   ' if value_ok else 'MISSED'} metadata change sends <= 1% of the dataset")
        print(f"{'met   ' if subject_ok else 'MISSED'} "
              "a new subject sends <= 1.5x its bytes + 1 MB")
        print(f"push.py wall time (Xet): first {xet['first_s']:.1f} s, value {xet['value_s']:.1f}"
              f" s, subject {xet['subject_s']:.1f} s")
        return 0 if value_ok and subject_ok else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
