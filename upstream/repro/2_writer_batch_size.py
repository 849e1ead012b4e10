"""Repro: datasets writes NIfTI in Arrow record batches of 1000 rows (Image: 100, Video: 10).

    python 2_writer_batch_size.py              # exit 1 while the bug is there, 0 once fixed
    python 2_writer_batch_size.py --overflow   # also write 22 volumes of 100 MB (needs ~5 GB RAM)

Writes 25 small ``Nifti`` examples through ``datasets.arrow_writer.ArrowWriter`` and prints the
record batches it made. With ``--overflow`` it writes 22 rows of 100 MB: one batch of them is
over the 2 GB an Arrow binary array can hold.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time

import datasets
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter, get_arrow_writer_batch_size_from_features

FEATURES = datasets.Features({"t1w": datasets.Nifti()})


def batches_written(num_rows: int, nbytes: int, path: str) -> list[int]:
    blob = os.urandom(nbytes)
    with ArrowWriter(path=path, features=FEATURES) as writer:
        for i in range(num_rows):
            writer.write({"t1w": {"bytes": blob, "path": f"sub-{i:02d}_T1w.nii.gz"}})
        writer.finalize()
    with pa.memory_map(path) as source:
        return [len(batch) for batch in pa.ipc.open_stream(source).read_all().to_batches()]


def main() -> int:
    work = tempfile.mkdtemp()
    try:
        print(f"datasets {datasets.__version__}")
        batch_size = get_arrow_writer_batch_size_from_features(FEATURES)
        rows = batch_size or datasets.config.DEFAULT_MAX_BATCH_SIZE
        print(f"writer batch size for Nifti: {rows} rows")
        small = batches_written(25, 1024, os.path.join(work, "small.arrow"))
        print(f"25 examples -> record batches of {small} rows")
        fixed = max(small) <= 10
        if "--overflow" in sys.argv:
            start = time.monotonic()
            try:
                big = batches_written(22, 100 * 2**20, os.path.join(work, "big.arrow"))
                print(f"22 x 100 MB -> record batches of {big} rows", end="")
            except pa.ArrowException as err:
                fixed = False
                print(f"22 x 100 MB -> {type(err).__name__}: {err}", end="")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f" ({time.monotonic() - start:.1f} s, peak RSS {peak:.0f} MB)")
        print("FIXED" if fixed else "BUG: NIfTI gets no small writer batch size")
        return 0 if fixed else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
