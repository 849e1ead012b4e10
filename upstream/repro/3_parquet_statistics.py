"""Repro: datasets' ParquetWriter keeps Parquet statistics on for embedded file bytes.

    python 3_parquet_statistics.py   # exit 1 while the bug is there, 0 once fixed

Writes one row group of eight 10 MB NIfTI-sized values through
``datasets.arrow_writer.ParquetWriter`` (``Nifti`` features, datasets' own column options), in a
child process so that its memory is measured alone, and prints whether the bytes column got
statistics and how much the writer added to the process's peak memory. For a binary column,
pyarrow keeps the min and max *values* of every page and column chunk: copies of whole files.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile

ROWS, SIZE = 8, 10 * 2**20


def write_once(path: str) -> dict:
    import datasets
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.arrow_writer import ParquetWriter

    features = datasets.Features({"subject": datasets.Value("string"), "t1w": datasets.Nifti()})
    # One buffer for all the bytes, so that building the table costs no second copy.
    data = pa.py_buffer(np.random.default_rng(0).integers(0, 255, ROWS * SIZE, dtype=np.uint8))
    offsets = pa.py_buffer(np.arange(0, (ROWS + 1) * SIZE, SIZE, dtype=np.int32))
    t1w = pa.StructArray.from_arrays(
        [pa.Array.from_buffers(pa.binary(), ROWS, [None, offsets, data]),
         pa.array([f"sub-{i:02d}_T1w.nii.gz" for i in range(ROWS)])], ["bytes", "path"])
    table = pa.Table.from_arrays([pa.array([f"sub-{i:02d}" for i in range(ROWS)]), t1w],
                                 schema=features.arrow_schema)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with ParquetWriter(path=path, features=features) as writer:
        writer.write_table(table, writer_batch_size=ROWS)
        writer.finalize()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    column = pq.ParquetFile(path).metadata.row_group(0).column(1)
    return {"version": datasets.__version__, "row_group_mb": table.nbytes / 2**20,
            "writer_peak_mb": (after - before) / 1024, "stats": column.is_stats_set,
            "column": column.path_in_schema, "file_mb": os.path.getsize(path) / 2**20}


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(write_once(sys.argv[2])))
        return 0
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run([sys.executable, __file__, "--child", os.path.join(work, "t.parquet")],
                             check=True, capture_output=True, text=True).stdout
    r = json.loads(out.splitlines()[-1])
    print(f"datasets {r['version']}")
    print(f"row group: {ROWS} x {SIZE / 2**20:.0f} MB = {r['row_group_mb']:.0f} MB; "
          f"file {r['file_mb']:.0f} MB")
    print(f"statistics on {r['column']}: {r['stats']}")
    print(f"writer's addition to peak RSS: {r['writer_peak_mb']:.0f} MB")
    fixed = not r["stats"]
    print("FIXED" if fixed else "BUG: statistics are kept for embedded file bytes")
    return 0 if fixed else 1


if __name__ == "__main__":
    sys.exit(main())
