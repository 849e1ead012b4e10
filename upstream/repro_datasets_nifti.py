"""Minimal reproduction: datasets sizes NIfTI datasets as if the images were not there.

    python upstream/repro_datasets_nifti.py

Writes 40 NIfTI files (~0.4 MB each, nibabel), builds ``Dataset.from_dict`` with a ``Nifti``
column of their paths, and prints what ``push_to_hub`` would decide:

1. ``Dataset._estimate_nbytes()`` counts external files for Audio/Image/Video but not Nifti,
   so 40 MB of images are estimated at a few KB and ``push_to_hub`` writes one shard
   (embedded with ``keep_in_memory=True``: the whole dataset in RAM).
2. ``get_arrow_writer_batch_size_from_features`` has no small batch for Nifti: 1000 rows
   per Arrow record batch, so a binary column can pass 2 GiB.
3. Parquet statistics are written for embedded-bytes columns: min/max *values* per page,
   i.e. copies of whole images held by the writer (peak memory ~2x the row group).

It exits 1 while the bugs are present and 0 once they are fixed (see datasets-nifti.patch).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import datasets
import nibabel as nib
import numpy as np
from datasets.arrow_writer import (
    get_arrow_writer_batch_size_from_features,
    get_parquet_column_options,
)


def main() -> int:
    work = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        path = work / f"sub-{i:02d}_T1w.nii.gz"
        data = rng.normal(500, 100, size=(64, 64, 64)).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        paths.append(str(path))
    real = sum(Path(p).stat().st_size for p in paths)
    ds = datasets.Dataset.from_dict({"t1w": paths}).cast_column("t1w", datasets.Nifti())

    estimate = ds._estimate_nbytes()
    max_shard = 500 * 2**20
    shards = int(estimate / max_shard) + 1  # as in Dataset._push_parquet_shards_to_hub
    shards_if_counted = int(real / max_shard) + 1
    batch = get_arrow_writer_batch_size_from_features(ds.features)
    options = get_parquet_column_options(ds.features, ds.features.arrow_schema)
    stats = options.get("write_statistics", True)

    print(f"NIfTI files on disk:             {real / 1e6:.1f} MB")
    print(f"Dataset._estimate_nbytes():      {estimate / 1e6:.3f} MB")
    print(f"shards push_to_hub would write:  {shards} for 500 MB shards "
          f"(×{real / max(estimate, 1):.0f} underestimate; scaled to 2.6 GB -> "
          f"{int(estimate * 2.6e9 / real / max_shard) + 1} shard, "
          f"{int(2.6e9 / max_shard) + 1} expected)")
    print(f"Arrow writer batch size (Nifti): {batch or datasets.config.DEFAULT_MAX_BATCH_SIZE} rows")
    print(f"statistics on t1w.bytes:         {stats}")

    fixed = (estimate >= 0.5 * real and shards == shards_if_counted and batch is not None
             and batch <= 100 and stats is not True and "t1w.bytes" not in (stats or []))
    print("FIXED" if fixed else "BUGS PRESENT")
    return 0 if fixed else 1


if __name__ == "__main__":
    raise SystemExit(main())
