"""What a consumer pays: bytes the Hub sends and peak memory per way of loading, per config.

    python -m benchmarks.bench_load [--subjects 30] [--scale 4] [--xet] [--workdir DIR]

Generates an ARC-shaped tree of real NIfTI files (default ~1.4 GB, 45 sessions), bakes the
template for it with the reference ARC schema plus a config ``t1`` (T1w + lesion mask + two
participant columns), and publishes it with the generated repo's ``push.py --repo-id`` to the
local Hub server (``tests/hubserver``, in this process; LFS transport unless ``--xet``).
Then each way of loading runs in a fresh process with an empty cache:

* ``stream``: ``load_dataset(repo, config, split=..., streaming=True)``, every row iterated
  (images decoded, as a user's loop does);
* ``stream-raw``: the same with ``.decode(False)`` (the bytes, not nibabel images): what
  the transport and the Parquet reader cost without decompression;
* ``download``: ``load_dataset(repo, config, split=...)`` (non-streaming);
* ``baseline``: ``load_dataset(..., streaming=True)`` without reading a row: the library's
  own memory (imports, card, file listing).

Measured per load: bytes the server sent (its ``download_bytes_sent`` counter, reset before
each load) and the peak RSS of the consumer process tree (sampled every 10 ms). Beside them,
the ideal: the bytes of the config's own columns in the Parquet files its ``data_files``
select, read from the Parquet metadata, and the config's largest row group. The same
streaming loads then run on the tree made ``--scale`` times larger (hard links), to show
whether memory grows with the dataset.

Targets (printed as met / MISSED): every load sends at most 1.2x the config's column bytes
plus a small allowance (the card, and the footers of the files it opens); streaming peak RSS
at most the baseline + 2x the largest row group it reads, within 10% on the larger tree;
every row group under the dataset viewer's scan limit (300,000,000 bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
T1_CONFIG = ["t1w", "lesion", "age_at_stroke", "sex"]
# dataset-viewer reads a row group's pages in one request and refuses more than this
# (libcommon ROWS_INDEX_MAX_ARROW_DATA_IN_MEMORY, passed to libviewer as scan_size_limit).
VIEWER_SCAN_LIMIT = 300_000_000
BYTES_FACTOR = 1.2
RSS_FACTOR = 2.0


# -- the consumer (runs in a child process) --------------------------------------------------


def child_main(spec: dict[str, Any]) -> None:
    """One load, as a user would write it; prints the number of rows read as JSON."""
    import datasets

    args = [spec["repo"]] + ([spec["config"]] if spec["config"] else [])
    how = spec["how"]
    if how == "download":
        ds = datasets.load_dataset(*args, split=spec["split"])
        print(json.dumps({"rows": len(ds)}))
        return
    stream = datasets.load_dataset(*args, split=spec["split"], streaming=True)
    rows = 0
    if how != "baseline":
        for _ in stream.decode(False) if how == "stream-raw" else stream:
            rows += 1
    print(json.dumps({"rows": rows}))


# -- what the staged folder says a config is ------------------------------------------------


@dataclass
class ConfigBytes:
    """A config's share of the Parquet files, from their metadata."""

    name: str
    split: str
    files: list[Path]
    columns: list[str] | None  # None: every column
    column_bytes: int = 0  # the ideal: bytes of the config's column chunks
    largest_row_group: int = 0  # of the config's columns
    largest_full_row_group: int = 0  # every column: what the dataset viewer reads
    footer_bytes: int = 0  # file bytes outside any column chunk (footers, magic)
    row_groups: int = 0


def config_bytes(stage: Path) -> dict[str, ConfigBytes]:
    """Every config of the staged card, with the bytes of its columns in its files."""
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(stage / "README.md")
    out: dict[str, ConfigBytes] = {}
    for config in card.data.get("configs", []):
        first = config["data_files"][0]
        files = sorted({p for entry in config["data_files"] if entry["split"] == first["split"]
                        for p in stage.glob(entry["path"]) if p.is_file()})
        info = ConfigBytes(config["config_name"], first["split"], files, config.get("columns"))
        for path in files:
            meta = pq.ParquetFile(path).metadata
            in_chunks = 0
            for i in range(meta.num_row_groups):
                group = meta.row_group(i)
                mine = full = 0
                for j in range(group.num_columns):
                    chunk = group.column(j)
                    full += chunk.total_compressed_size
                    if info.columns is None or chunk.path_in_schema.split(".")[0] in info.columns:
                        mine += chunk.total_compressed_size
                info.column_bytes += mine
                info.largest_row_group = max(info.largest_row_group, mine)
                info.largest_full_row_group = max(info.largest_full_row_group, full)
                info.row_groups += 1
                in_chunks += full
            info.footer_bytes += path.stat().st_size - in_chunks
        out[info.name] = info
    return out


# -- publishing -------------------------------------------------------------------------------


def bake(work: Path) -> Path:
    """The template baked for ARC, its schema.py the reference one plus the ``t1`` config."""
    from cookiecutter.main import cookiecutter

    repo = Path(cookiecutter(str(TEMPLATE_ROOT), no_input=True, output_dir=str(work / "baked"),
                             overwrite_if_exists=True,
                             extra_context={"dataset_name": "ARC", "dataset_slug": "arc",
                                            "hf_repo_id": "bench/arc"}))
    schema = (TEMPLATE_ROOT / "examples" / "schemas" / "arc.py").read_text(encoding="utf-8")
    schema += (
        "\n\n# The benchmark's extra config: someone training on T1w + lesion masks.\n"
        "import dataclasses  # noqa: E402\n\n"
        f"SCHEMA = dataclasses.replace(SCHEMA, configs={{**SCHEMA.configs, 't1': {T1_CONFIG!r}}})\n"
    )
    (repo / "schema.py").write_text(schema, encoding="utf-8")
    return repo


@dataclass
class Hub:
    """The in-process Hub server and the environment every client process gets."""

    server: Any
    xet: bool
    env: dict[str, str] = field(default_factory=dict)

    def client_env(self, home: Path) -> dict[str, str]:
        return {**self.env, "HF_HOME": str(home), "HF_DATASETS_CACHE": str(home / "datasets")}


@contextlib.contextmanager
def hub_server(storage: Path, xet: bool) -> Iterator[Hub]:
    sys.path.insert(0, str(TEMPLATE_ROOT / "tests"))
    from hubserver import HubServer

    token = "hf_bench_" + secrets.token_hex(8)
    server = HubServer(storage, tokens={token: "bench"}, xet=xet).start()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING", "MIMALLOC_", "MALLOC_"))}
    env.update(HF_ENDPOINT=server.url, HF_TOKEN=token, HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0")
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    try:
        yield Hub(server, xet, env)
    finally:
        server.stop()


def publish(hub: Hub, repo: Path, tree: Path, stage: Path, repo_id: str) -> dict[str, int]:
    """push.py --repo-id, as a maintainer runs it; returns the upload's server counters."""
    hub.server.reset_stats()
    with tempfile.TemporaryDirectory(prefix="push-home-") as home:
        proc = subprocess.run(
            [sys.executable, "push.py", "--bids-root", str(tree), "--out", str(stage),
             "--repo-id", repo_id, "--no-progress", "--no-bids-validator"],
            cwd=repo, env=hub.client_env(Path(home)), capture_output=True, text=True,
            check=False)
    if proc.returncode != 0:
        raise SystemExit(f"push.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return hub.server.stats(repo_id)


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Load:
    label: str
    config: ConfigBytes
    how: str
    tree: str
    rows: int = 0
    sent: int = 0
    rss: int = 0
    wall: float = 0.0


def measure(hub: Hub, repo_id: str, config: ConfigBytes, how: str, tree: str) -> Load:
    """One load in a fresh process with an empty cache: bytes sent, peak RSS, wall time."""
    hub.server.reset_stats()
    spec = {"repo": repo_id, "config": None if config.name == "default" else config.name,
            "split": config.split, "how": how}
    with tempfile.TemporaryDirectory(prefix="consumer-home-") as home:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_load", "--child", json.dumps(spec)],
            cwd=TEMPLATE_ROOT, env=hub.client_env(Path(home)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        output: dict[str, str] = {}
        reader = threading.Thread(target=lambda: output.update(  # drain pipes while sampling
            zip(("out", "err"), proc.communicate(), strict=True)))
        reader.start()
        peak = _sample_peak_rss(proc)
        reader.join()
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{spec} failed ({proc.returncode}):\n{output.get('err', '')[-4000:]}")
    rows = json.loads(output["out"].strip().splitlines()[-1])["rows"]
    sent = hub.server.stats(repo_id).get("download_bytes_sent", 0)
    load = Load(f"{config.name}: {how}", config, how, tree, rows, sent, peak, wall)
    print(f"  {load.label} ({tree}): {rows} rows, {sent / 1e6:,.1f} MB sent, peak RSS "
          f"{peak / 2**20:,.0f} MB, {wall:.1f} s", flush=True)
    return load


def _sample_peak_rss(proc: subprocess.Popen[str]) -> int:
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.01)
    return peak


def card_bytes(stage: Path) -> int:
    return (stage / "README.md").stat().st_size


# -- report -----------------------------------------------------------------------------------


def report(loads: list[Load], baselines: dict[tuple[str, str], int], stage: Path,
           configs: dict[str, ConfigBytes], scale: int) -> None:
    mb = 1e6
    print()
    print("| config | load | tree | bytes sent | ideal (config's columns) | sent / ideal "
          "| peak RSS | baseline + 2x largest row group | (peak - baseline) / largest row group |")
    print("|---|---|---|---|---|---|---|---|---|")
    for load in loads:
        c = load.config
        base = baselines[(c.name, load.tree)]
        bound = base + RSS_FACTOR * c.largest_row_group
        streamed = load.how.startswith("stream")
        rss_bound = f"{bound / 2**20:,.0f} MB" if streamed else "—"
        factor = f"{(load.rss - base) / max(c.largest_row_group, 1):.1f}" if streamed else "—"
        print(f"| {c.name} | {load.how} | {load.tree} | {load.sent / mb:,.1f} MB "
              f"| {c.column_bytes / mb:,.1f} MB | {load.sent / max(c.column_bytes, 1):.2f}x "
              f"| {load.rss / 2**20:,.0f} MB | {rss_bound} | {factor} |")
    print()
    print("| config | files | row groups | largest row group (config's columns) "
          "| largest row group (all columns) | library baseline RSS |")
    print("|---|---|---|---|---|---|")
    for c in configs.values():
        base = baselines[(c.name, "x1")]
        print(f"| {c.name} | {len(c.files)} | {c.row_groups} | {c.largest_row_group / mb:,.1f} MB "
              f"| {c.largest_full_row_group / mb:,.1f} MB | {base / 2**20:,.0f} MB |")
    print()
    checks: list[tuple[str, bool]] = []

    def check(text: str, ok: bool) -> None:
        checks.append((text, ok))

    for load in loads:
        c = load.config
        allowance = card_bytes(stage) + c.footer_bytes + (1 << 20)
        limit = BYTES_FACTOR * c.column_bytes + allowance
        check(f"{load.label} ({load.tree}) sends <= {BYTES_FACTOR}x its columns + "
              f"{allowance / mb:.1f} MB: {load.sent / mb:,.1f} <= {limit / mb:,.1f} MB",
              load.sent <= limit)
        if load.how.startswith("stream"):
            bound = baselines[(c.name, load.tree)] + RSS_FACTOR * c.largest_row_group
            check(f"{load.label} ({load.tree}) peak RSS <= baseline + {RSS_FACTOR:g}x largest "
                  f"row group: {load.rss / 2**20:,.0f} <= {bound / 2**20:,.0f} MB",
                  load.rss <= bound)
    big = f"x{scale}"
    for load in loads:
        twin = next((x for x in loads if x.tree == big and x.label == load.label), None)
        if load.tree == "x1" and twin is not None:
            growth = twin.rss / load.rss - 1
            check(f"{load.label} peak RSS on the {big} tree within 10%: {growth:+.0%}",
                  abs(growth) <= 0.10)
    largest = max(c.largest_full_row_group for c in configs.values())
    check(f"largest row group under the viewer's scan limit: {largest / mb:,.1f} <= "
          f"{VIEWER_SCAN_LIMIT / mb:,.0f} MB", largest <= VIEWER_SCAN_LIMIT)
    for text, ok in checks:
        print(f"{'met   ' if ok else 'MISSED'} {text}")


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--max-sessions", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 96))
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4,
                        help="size factor of the memory check (0: skip it)")
    parser.add_argument("--xet", action="store_true",
                        help="upload and download over Xet (default: LFS, HF_HUB_DISABLE_XET=1)")
    parser.add_argument("--no-decode", action="store_true",
                        help="skip the decoded streaming loads (the slowest)")
    parser.add_argument("--workdir", type=Path, help="keep trees and staging here")
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    from benchmarks.bench_build import arc_tree, scaled_copy, tree_bytes

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-load-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tree = arc_tree(work, subjects=args.subjects, max_sessions=args.max_sessions,
                        shape=tuple(args.shape), volumes=args.volumes)
        print(f"tree: {tree_bytes(tree) / 1e9:.2f} GB, "
              f"{sum(1 for _ in tree.glob('sub-*/ses-*'))} sessions; {os.cpu_count()} cores; "
              f"{'Xet' if args.xet else 'LFS'} transport")
        repo = bake(work)
        trees = {"x1": tree}
        if args.scale > 1:
            big = work / f"arc-x{args.scale}"
            if not big.exists():
                scaled_copy(tree, big, args.scale)
            trees[f"x{args.scale}"] = big
        hub_storage = work / "hub"
        shutil.rmtree(hub_storage, ignore_errors=True)
        loads: list[Load] = []
        baselines: dict[tuple[str, str], int] = {}
        configs: dict[str, ConfigBytes] = {}
        with hub_server(hub_storage, args.xet) as hub:
            for label, root in trees.items():
                repo_id, stage = f"bench/arc-{label}", work / f"stage-{label}"
                shutil.rmtree(stage, ignore_errors=True)
                t = time.perf_counter()
                up = publish(hub, repo, root, stage, repo_id)
                per = config_bytes(stage)
                print(f"published {repo_id} in {time.perf_counter() - t:.0f} s: "
                      f"{sum(p.stat().st_size for p in stage.rglob('*.parquet')) / 1e9:.2f} GB "
                      f"of Parquet, stored {up.get('bytes_stored', 0) / 1e9:.2f} GB; "
                      + ", ".join(f"{c.name} {c.column_bytes / 1e6:,.1f} MB in "
                                  f"{len(c.files)} files" for c in per.values()))
                if label == "x1":
                    configs = per
                for c in per.values():
                    baselines[(c.name, label)] = measure(hub, repo_id, c, "baseline", label).rss
                    hows = ["stream-raw"]
                    if label == "x1":
                        hows += [] if args.no_decode else ["stream"]
                        hows += ["download"]
                    loads += [measure(hub, repo_id, per[c.name], how, label) for how in hows]
        report(loads, baselines, work / "stage-x1", configs, args.scale)
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
