"""Which user-side ``load_dataset`` calls can not return stale cached data (datasets 5.2.0).

    python upstream/stale_cache_loads.py [--mb 200]

Writes two real staged folders, ``a/staged`` and ``b/staged``, each ``--mb`` MB of Parquet
shards (an ``x`` column and a ``Nifti`` column of embedded bytes) under the same README.md
YAML (``configs`` + ``dataset_info``), as a staged bids-hf folder has. Then, for every
candidate way of loading, in a fresh ``HF_DATASETS_CACHE``:

    load a (cold) -> expect x=[1, 1]    load b -> expect [2, 2]
    load a again (warm)                 rewrite a with x=[3, 3], same card -> expect [3, 3]

and prints whether each load was right, whether the ``Nifti`` feature survived, the time of
the cold and warm loads plus one pass over every row's bytes, and the disk the cache took.
``--only NAME`` runs one candidate.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORK = Path(tempfile.mkdtemp(prefix="stale-cache-"))
os.environ["HF_DATASETS_CACHE"] = str(WORK / "cache")  # before datasets is imported

import datasets
import pyarrow.compute as pc

CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
dataset_info:
  features:
  - name: x
    dtype: int64
  - name: t1w
    dtype: nifti
  splits:
  - name: train
    num_examples: 2
---
"""


def stage(folder: Path, value: int, mb: int) -> None:
    """Two shards of one row each: x=value and mb/2 MB of bytes in a Nifti column."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    features = datasets.Features({"x": datasets.Value("int64"), "t1w": datasets.Nifti()})
    image = os.urandom(mb * 2**20 // 2)
    for shard in range(2):
        row = {"x": [value], "t1w": [{"bytes": image, "path": f"sub-{shard}.nii.gz"}]}
        datasets.Dataset.from_dict(row, features=features).to_parquet(
            folder / "data" / f"train-{shard:05d}-of-00002.parquet")
    (folder / "README.md").write_text(CARD)


def content_key(folder: Path) -> str:
    """What a manifest of the folder's files identifies: names and sha256 of the data files."""
    digest = hashlib.sha256()
    for path in sorted((folder / "data").glob("*.parquet")):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


Loader = Callable[[Path, str], Any]  # (staged folder, its content key) -> dataset


def candidates(cache_root: Path) -> dict[str, Loader]:
    ld = datasets.load_dataset
    return {
        "plain": lambda f, key: ld(str(f), split="train"),
        "name='default'": lambda f, key: ld(str(f), "default", split="train"),
        "name=<content key>": lambda f, key: ld(str(f), key, split="train"),
        "revision=<content key>": lambda f, key: ld(str(f), split="train", revision=key),
        "data_dir='data'": lambda f, key: ld(str(f), split="train", data_dir="data"),
        "data_files='data/train-*'": lambda f, key: ld(
            str(f), split="train", data_files={"train": "data/train-*"}),
        "data_files=<absolute paths>": lambda f, key: ld(
            str(f), split="train",
            data_files={"train": sorted(map(str, (f / "data").glob("*.parquet")))}),
        "cache_dir=<root>/<content key>": lambda f, key: ld(
            str(f), split="train", cache_dir=str(cache_root / key)),
        "download_mode='force_redownload'": lambda f, key: ld(
            str(f), split="train", download_mode="force_redownload"),
        "keep_in_memory=True": lambda f, key: ld(str(f), split="train", keep_in_memory=True),
        "streaming=True": lambda f, key: ld(str(f), split="train", streaming=True),
        "load_dataset('parquet', data_files=...)": lambda f, key: ld(
            "parquet", split="train", data_files=str(f / "data" / "*.parquet")),
    }


def xs(ds: Any) -> list[int]:
    if isinstance(ds, datasets.IterableDataset):
        return [row["x"] for row in ds.select_columns(["x"])]
    return list(ds["x"])


def read_all_bytes(ds: Any) -> int:
    """One pass over every row's image bytes, undecoded."""
    if isinstance(ds, datasets.IterableDataset):
        return sum(len(row["t1w"]["bytes"]) for row in ds.decode(False))
    return sum(pc.sum(pc.binary_length(pc.struct_field(table.column("t1w"), "bytes"))).as_py()
               for table in ds.with_format("arrow").iter(batch_size=1))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run(name: str, load: Loader, mb: int) -> dict[str, Any]:
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(WORK / "keyed", ignore_errors=True)
    datasets.config.HF_DATASETS_CACHE = str(cache)
    a, b = WORK / "a" / "staged", WORK / "b" / "staged"
    stage(a, 1, mb)
    stage(b, 2, mb)
    # The content key is taken outside the timings: a bids-hf manifest already holds the sha256.
    # x is read right after each load: a streamed dataset reads its files only when iterated.
    first, cold = timed(lambda: load(a, content_key(a)))
    _, cold_pass = timed(lambda: read_all_bytes(first))
    got = [xs(first)]
    nifti = isinstance(first.features["t1w"], datasets.Nifti)
    got.append(xs(load(b, content_key(b))))
    key = content_key(a)
    again, warm = timed(lambda: load(a, key))
    _, warm_pass = timed(lambda: read_all_bytes(again))
    stage(a, 3, mb)
    got.append(xs(load(a, content_key(a))))
    return {
        "name": name,
        "got": got,
        "right": got == [[1, 1], [2, 2], [3, 3]],
        "nifti": nifti,
        "cold": cold + cold_pass,
        "warm": warm + warm_pass,
        "cache_mb": (du(cache) + du(WORK / "keyed")) / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="MB of image bytes per staged folder")
    parser.add_argument("--only", help="run this candidate only")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        loaders = candidates(WORK / "keyed")
        names = [args.only] if args.only else list(loaders)
        a = WORK / "a" / "staged"
        stage(a, 1, args.mb)
        _, key_seconds = timed(lambda: content_key(a))
        print(f"datasets {datasets.__version__}; two staged folders of {args.mb} MB; "
              f"sha256 of one folder's shards: {key_seconds:.2f} s")
        print(f"{'load':42} {'a, b, a rewritten (want [1,1] [2,2] [3,3])':45} {'Nifti':6} "
              f"{'cold+pass':>9} {'warm+pass':>9} {'cache':>8}")
        for name in names:
            try:
                r = run(name, loaders[name], args.mb)
            except ValueError as err:  # a candidate that cannot load at all is a result too
                first = str(err).splitlines()[0][:90]
                print(f"{name:42} {type(err).__name__}: {first}", flush=True)
                continue
            got = " ".join(str(x).replace(" ", "") for x in r["got"])
            verdict = "right" if r["right"] else "STALE"
            print(f"{name:42} {got:28} {verdict:16} {'yes' if r['nifti'] else 'NO':6} "
                  f"{r['cold']:8.2f}s {r['warm']:8.2f}s {r['cache_mb']:6.0f}MB", flush=True)
        return 0
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
