"""Indexing speed on a large tree: bids_hf's index (+ row assembly) vs bids2table vs os.walk.

    python -m benchmarks.bench_index [--files 50000]

The tree holds empty files (names are all indexing looks at): half NIfTI, half JSON
sidecars, two sessions per subject. Reported: seconds per step and ratios to bids2table,
which does the entity parsing underneath ours.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import bids2table
from bids_hf import Schema, index_bids, many
from bids_hf._rows import assemble_rows

from examples.cohorts import make_index_tree


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--target", type=float, default=15.0, help="seconds allowed for our index")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        root, gen_s = timed(lambda: make_index_tree(work / "ds", args.files))
        print(f"tree: {args.files} files in {gen_s:.1f} s ({root})")
        _, walk_s = timed(lambda: sum(len(f) for _, _, f in os.walk(root)))
        table, b2t_s = timed(lambda: bids2table.index_dataset(root))
        index, ours_s = timed(lambda: index_bids(root))
        schema = Schema(columns={s.lower(): many(suffix=s) for s in
                                 ("T1w", "T2w", "FLAIR", "dwi", "bold")})
        rowset, rows_s = timed(lambda: assemble_rows(index, schema))
        print()
        print("| step | seconds | vs bids2table |")
        print("|---|---|---|")
        for name, secs in (("os.walk (names only)", walk_s),
                           ("bids2table.index_dataset (raw only)", b2t_s),
                           ("bids_hf index_bids (raw + derivatives, stat, coverage walk)", ours_s),
                           ("bids_hf assemble_rows (5 columns)", rows_s),
                           ("bids_hf index + rows", ours_s + rows_s)):
            print(f"| {name} | {secs:.2f} | {secs / b2t_s:.2f}x |")
        print()
        print(f"indexed {len(index.files)} data files ({len(table)} by bids2table), "
              f"{len(rowset.rows)} rows, {len(rowset.claimed)} images claimed")
        ok = ours_s + rows_s <= args.target
        print(f"target: index + rows <= {args.target:.0f} s: {'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
