"""A researcher's first hour, as one path: real images with dcm2niix-style sidecars, baked
with a relative bids_root, the schema inferred safely, push.py passing with site warnings
only, and the obvious ``ds.push_to_hub(...)`` publishing BIDS paths through the pipeline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
from conftest import TEMPLATE_ROOT
from hub_fixtures import HubEnv

from examples.cohorts import make_scanner


def test_newcomer_path_on_a_scanner_export(tmp_path: Path, hub_env: HubEnv) -> None:
    work = tmp_path / "work"
    make_scanner(work / "data" / "scan")
    baked = subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE_ROOT),
         "dataset_slug=scan", "bids_root=data/scan"],  # relative, as a user types it
        cwd=work, env={**os.environ, "PWD": str(work)}, capture_output=True, text=True,
        check=False)
    assert baked.returncode == 0, baked.stderr
    repo = work / "scan"
    assert "cd scan" in baked.stdout
    schema = (repo / "schema.py").read_text()
    # Series unusable without their parameters publish their sidecars; the time of day in
    # those sidecars is proposed for removal; the site fields are left for review.
    assert re.search(r"'bold_rest': one\(.*sidecar=True", schema)
    assert re.search(r"'dwi': one\(.*sidecar=True", schema)
    assert "privacy=Privacy(drop=('AcquisitionTime',))" in schema
    assert "InstitutionAddress" in schema and "sidecar=True" not in schema.split("'t1w'")[1][:60]

    out = work / "staged"
    done = subprocess.run([sys.executable, "push.py", "--bids-root", "../data/scan", "--out",
                           str(out), "--no-progress"], cwd=repo, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "FAIL" not in done.stderr and done.stdout.startswith("OK: 3 rows")
    warned = {line.split()[1] for line in done.stderr.splitlines() if line.startswith("warn")}
    assert warned == {"no"}, done.stderr  # "no site-identifying fields published" only
    assert "InstitutionAddress: 6 file(s) published" in done.stderr
    sidecars = [text for shard in (out / "data").glob("*.parquet")
                for text in pq.read_table(shard, columns=["bold_rest_sidecar"]).column(0)
                .to_pylist()]
    assert sidecars and all("RepetitionTime" in s and "AcquisitionTime" not in s
                            for s in sidecars)

    # The notebook path: the obvious call is the checked, sharded, verified one.
    sys.path.insert(0, str(repo))
    try:
        from bids_hf import BidsDataset, load_schema

        ds = BidsDataset.from_bids(work / "data" / "scan", load_schema(repo / "schema.py"))
        result = ds.push_to_hub("test-org/scan", out=tmp_path / "api-staged", progress=False,
                                bids_validator=False)
    finally:
        sys.path.remove(str(repo))
    assert result.private and result.commit
    hub = datasets.load_dataset("test-org/scan", split="train")
    raw = hub.cast_column("t1w", datasets.Nifti(decode=False))
    assert [row["t1w"]["path"] for row in raw] == [
        f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz" for i in (1, 2, 3)]
