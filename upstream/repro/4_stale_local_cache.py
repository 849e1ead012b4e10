"""Repro: a local folder whose README.md declares ``configs`` loads another folder's cached data.

    python 4_stale_local_cache.py   # exit 1 while the bug is there, 0 once fixed

Writes two folders named ``staged`` (``a/staged`` holds x=[1], ``b/staged`` holds x=[2]) with the
same README.md YAML, loads both with ``load_dataset``, then writes ``a/staged`` again with x=[3]
and loads it once more. A fresh ``HF_DATASETS_CACHE`` is used and removed. Without the YAML
block every load is right; with it, the cache directory does not depend on the data files.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp())
os.environ["HF_DATASETS_CACHE"] = str(WORK / "cache")  # before datasets is imported

import datasets

CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---
"""


def stage(folder: Path, value: int) -> None:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"x": [value]}).to_parquet(
        folder / "data" / "train-00000-of-00001.parquet")
    (folder / "README.md").write_text(CARD)


def load_x(folder: Path) -> list[int]:
    return list(datasets.load_dataset(str(folder), split="train")["x"])


def main() -> int:
    datasets.disable_progress_bars()
    try:
        a, b = WORK / "a" / "staged", WORK / "b" / "staged"
        stage(a, 1)
        stage(b, 2)
        got = {"a/staged (holds [1])": load_x(a), "b/staged (holds [2])": load_x(b)}
        time.sleep(0.01)  # a new modification time, whatever the filesystem's resolution
        stage(a, 3)
        got["a/staged rewritten (holds [3])"] = load_x(a)
        print(f"datasets {datasets.__version__}")
        for name, x in got.items():
            print(f"load_dataset({name}): {x}")
        fixed = list(got.values()) == [[1], [2], [3]]
        print("FIXED" if fixed
              else "BUG: loads returned another folder's (or an older) cached data")
        return 0 if fixed else 1
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
