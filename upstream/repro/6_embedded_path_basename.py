"""Feature request, not a bug: embedding keeps only a file's basename as its ``path``.

    python 6_embedded_path_basename.py   # prints the stored paths; always exits 0

Embeds two NIfTI files of a BIDS tree (a raw image and a derivative with the same name) the
way ``push_to_hub`` does (``embed_table_storage``) and prints the stored ``path`` values.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import datasets
import nibabel as nib
import numpy as np
from datasets.table import embed_table_storage

FILES = ("sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
         "derivatives/defaced/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")


def main() -> int:
    root = Path(tempfile.mkdtemp())
    try:
        for i, relative in enumerate(FILES):
            (root / relative).parent.mkdir(parents=True)
            nib.save(nib.Nifti1Image(np.full((4, 4, 4), i, np.int16), np.eye(4)), root / relative)
        ds = datasets.Dataset.from_dict({"t1w": [str(root / f) for f in FILES]},
                                        features=datasets.Features({"t1w": datasets.Nifti()}))
        embedded = embed_table_storage(ds.data.table)
        print(f"datasets {datasets.__version__}")
        for relative, value in zip(FILES, embedded.column("t1w").to_pylist(), strict=True):
            print(f"{relative:62} -> path {value['path']!r}, {len(value['bytes'])} bytes")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
