"""Repro: ``Dataset._estimate_nbytes`` does not count NIfTI files, so datasets writes one shard.

    python 1_size_estimate.py        # exit 1 while the bug is there, 0 once fixed

Writes 40 NIfTI volumes with nibabel, builds ``Dataset.from_dict`` with a ``Nifti`` column of
their paths, and prints the estimate next to the files' size, the number of shards
``push_to_hub`` would choose for 500 MB shards, and the shards ``save_to_disk`` actually
writes when asked for shards of a quarter of the data.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import datasets
import nibabel as nib
import numpy as np


def main() -> int:
    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp())
    try:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(40):
            path = work / f"sub-{i:02d}_T1w.nii.gz"
            data = rng.normal(500, 100, size=(64, 64, 64)).astype(np.int16)
            nib.save(nib.Nifti1Image(data, np.eye(4)), path)
            paths.append(str(path))
        files = sum(os.path.getsize(p) for p in paths)
        ds = datasets.Dataset.from_dict(
            {"t1w": paths}, features=datasets.Features({"t1w": datasets.Nifti()}))
        estimate = ds._estimate_nbytes()
        # Dataset._push_parquet_shards_to_hub: num_shards = int(estimate / max_shard_size) + 1;
        # scaled to a 2.6 GB dataset of such files and the default 500 MB shards:
        hub_shards = int(2.6e9 * estimate / files / 500e6) + 1
        ds.save_to_disk(work / "saved", max_shard_size=files // 4)
        saved = len(list((work / "saved").glob("data-*.arrow")))
        print(f"datasets {datasets.__version__}")
        print(f"NIfTI files:                  {len(paths)}, {files / 1e6:.1f} MB")
        print(f"Dataset._estimate_nbytes():   {estimate / 1e6:.3f} MB")
        print(f"push_to_hub, 2.6 GB of such files: {hub_shards} shard(s) of 500 MB (6 expected)")
        print(f"save_to_disk(max_shard_size={files // 4 / 1e6:.1f} MB): {saved} shard(s)")
        fixed = 0.9 * files < estimate < 1.1 * files and saved >= 4
        print("FIXED" if fixed else "BUG: the NIfTI files are not counted")
        return 0 if fixed else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
