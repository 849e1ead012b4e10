"""Repro: ``Nifti`` drops the bytes given with a path that exists relative to the working directory.

    python 5_nifti_relative_path.py   # exit 1 while the bug is there, 0 once fixed

From the root of a small BIDS tree, builds ``Dataset.from_dict`` with
``{"path": "sub-01/anat/sub-01_T1w.nii.gz", "bytes": <the file's bytes>}`` (what a builder
yields to keep the BIDS-relative path), then decodes the row from another directory.
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

RELATIVE = "sub-01/anat/sub-01_T1w.nii.gz"


def main() -> int:
    root, elsewhere = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    cwd = os.getcwd()
    try:
        (root / RELATIVE).parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.int16), np.eye(4)), root / RELATIVE)
        data = (root / RELATIVE).read_bytes()
        os.chdir(root)
        ds = datasets.Dataset.from_dict({"t1w": [{"path": RELATIVE, "bytes": data}]},
                                        features=datasets.Features({"t1w": datasets.Nifti()}))
        stored = ds.with_format("arrow")[0]["t1w"].to_pylist()[0]
        os.chdir(elsewhere)
        try:
            decoded = f"shape {ds[0]['t1w'].shape}"
        except FileNotFoundError as err:
            decoded = f"FileNotFoundError: {err}"
        print(f"datasets {datasets.__version__}")
        print(f"given:   path={RELATIVE!r}, bytes={len(data)} bytes (built from the BIDS root)")
        size = None if stored["bytes"] is None else len(stored["bytes"])
        print(f"stored:  path={stored['path']!r}, bytes={size}")
        print(f"decoded from another directory: {decoded}")
        fixed = stored["bytes"] == data and decoded.startswith("shape")
        print("FIXED" if fixed else "BUG: the bytes were dropped for a cwd-relative path")
        return 0 if fixed else 1
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(elsewhere, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
