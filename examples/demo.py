"""The template end to end on a synthetic ARC-shaped dataset, as a newcomer would run it.

    python -m examples.demo [--out demo-output]

1. generate a small BIDS tree shaped like the Aphasia Recovery Cohort (real NIfTI files),
2. bake the template as the README shows, ``cookiecutter --no-input TEMPLATE KEY=VALUE...``
   run from the output folder with a relative ``bids_root`` (so schema.py is inferred), then
   use the reference ARC schema from examples/schemas,
3. run the generated repo's ``push.py`` (validate, build shards, stage the card, verify),
4. load the staged folder with ``datasets.load_dataset`` and decode one T1w with nibabel,
5. print a summary.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import TEMPLATE_ROOT
from .cohorts import make_arc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()

    bids = make_arc(out / "bids" / "ds004884-synthetic", subjects=args.subjects,
                    shape=(32, 32, 24), volumes=8)
    n_nifti = len(list(bids.rglob("*.nii.gz")))
    print(f"[1/5] synthetic ARC tree: {bids} ({n_nifti} NIfTI files)")

    answers = {"dataset_name": "ARC synthetic demo", "dataset_slug": "arc-demo",
               "hf_repo_id": "demo-org/arc-demo", "license": "auto",
               "bids_root": bids.relative_to(out).as_posix()}
    bake = [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE_ROOT),
            *(f"{key}={value}" for key, value in answers.items())]
    print(f"[2/5] cookiecutter {shlex.join(bake[3:])}  (in {out.name}/)", flush=True)
    # PWD as a shell sets it: a relative bids_root is read from the folder the command ran in.
    done = subprocess.run(bake, cwd=out, env={**os.environ, "PWD": str(out)}, check=False)
    if done.returncode != 0:
        print(f"cookiecutter failed with exit code {done.returncode}", file=sys.stderr)
        return done.returncode
    repo = out / answers["dataset_slug"]
    inferred = (repo / "schema.py").read_text(encoding="utf-8")
    n_columns = inferred.count("one(") + inferred.count("many(")
    shutil.copy(TEMPLATE_ROOT / "examples" / "schemas" / "arc.py", repo / "schema.py")
    print(f"      baked {repo.name}/ (inferred a {n_columns}-column schema; using the "
          "reference ARC schema from examples/schemas/arc.py)")

    staged = out / "staged"
    cmd = [sys.executable, "push.py", "--bids-root", str(bids), "--out", str(staged),
           "--max-shard-size", "20MB"]
    print(f"[3/5] {' '.join(cmd[1:])}  (in {repo.name}/)")
    done = subprocess.run(cmd, cwd=repo, check=False)
    if done.returncode != 0:
        print(f"push.py failed with exit code {done.returncode}", file=sys.stderr)
        return done.returncode

    from bids_hf import load_staged  # cached under the manifest's hash: never an earlier build

    ds = load_staged(staged, split="train")
    row = next(r for r in ds if r["t1w"])
    t1w = row["t1w"][0]
    print(f"[4/5] load_dataset: {len(ds)} rows; {row['subject_id']} {row['session_id']} T1w "
          f"-> {type(t1w).__name__} shape {t1w.shape}, voxel {t1w.header.get_zooms()}, "
          f"mean {float(t1w.get_fdata().mean()):.1f}")

    shards = sorted((staged / "data").glob("*.parquet"))
    size = sum(p.stat().st_size for p in shards)
    print(f"[5/5] summary: rows={len(ds)} columns={len(ds.features)} shards={len(shards)} "
          f"bytes={size} ({size / 1e6:.1f} MB) seconds={time.perf_counter() - t0:.1f}")
    print(f"      card: {staged / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
