"""The generated repo's SLURM job array on a real single-node cluster: plan, build the shards
with `sbatch --array`, then a final push.py that reuses them all and verifies.

The cluster (munged, slurmctld, slurmd as root, every file in one folder) is started by
`tests/slurm_cluster.sh` for the session and stopped after it; with SLURM_TEST_DIR set, the
cluster in that folder is used (started if needed) and left running. Where SLURM cannot start
(not installed, not root) the tests skip with the reason; with REQUIRE_SLURM=1 they fail
instead, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from conftest import run_push

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER_SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
# Shard sizes that split the small ARC tree into five or six shards.
SIZES = ["--max-shard-size", "30KB", "--row-group-size", "15KB"]
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@dataclass(frozen=True)
class SlurmCluster:
    """A running cluster: clients find it through SLURM_CONF in ``env``."""

    folder: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=cwd, env=env or self.env, capture_output=True,
                              text=True, check=False, timeout=60)


def _unavailable(reason: str, details: str = "") -> NoReturn:
    if os.environ.get("REQUIRE_SLURM") == "1":
        pytest.fail(f"REQUIRE_SLURM=1, but SLURM cannot start here: {reason}\n{details}",
                    pytrace=False)
    pytest.skip(f"SLURM cannot start here: {reason}")


def _free_ports(count: int) -> list[int]:
    """Ports free right now, all different (each socket is held until all are bound)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _cluster_script(command: str, folder: Path,
                    env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), command, str(folder)], env=env,
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node SLURM cluster for this session (or the one in SLURM_TEST_DIR)."""
    if sys.platform != "linux" or shutil.which("bash") is None:
        _unavailable(f"needs Linux and bash (this is {sys.platform})")
    given = os.environ.get("SLURM_TEST_DIR")
    # In /tmp, not under pytest's (or TMPDIR's) private folders: munged, running as the munge
    # user, refuses a socket whose parent folders not everyone can enter.
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="bids-hf-slurm-", dir="/tmp"))
    # Ports of its own, so that concurrent test sessions each run their own cluster.
    ctld_port, slurmd_port = _free_ports(2)
    env = {**os.environ, "SLURMCTLD_PORT": str(ctld_port), "SLURMD_PORT": str(slurmd_port)}
    t0 = time.perf_counter()
    started = _cluster_script("start", folder, env)
    if started.returncode != 0:
        if not given:
            _cluster_script("stop", folder, env)
            shutil.rmtree(folder, ignore_errors=True)
        errors = [line.removeprefix("slurm: error: ") for line in started.stderr.splitlines()
                  if line.startswith("slurm: error: ")]
        _unavailable(errors[-1] if errors else f"{CLUSTER_SCRIPT.name} start exited "
                     f"{started.returncode}", details=started.stdout + started.stderr)
    print(f"\nSLURM cluster in {folder} up in {time.perf_counter() - t0:.1f} s")
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    try:
        yield SlurmCluster(folder, env)
    finally:
        if not given:
            stopped = _cluster_script("stop", folder, env)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            shutil.rmtree(folder, ignore_errors=True)


def staged_digests(out: Path) -> dict[str, str]:
    """sha256 of everything that would be uploaded: the shards and the card."""
    files = [*sorted((out / "data").glob("*.parquet")), out / "README.md"]
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def shard_mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "data").glob("*.parquet")}


def wait_for_array(cluster: SlurmCluster, job_id: str, tasks: int,
                   timeout: float = 180) -> dict[int, dict[str, str]]:
    """Each array task's scontrol record once all have finished (no sacct without accounting:
    the controller keeps finished jobs for MinJobAge)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = cluster.run("scontrol", "--oneliner", "show", "job", job_id)
        assert shown.returncode == 0, shown.stderr
        records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.stdout.splitlines()]
        by_task = {int(r["ArrayTaskId"]): r for r in records if r.get("ArrayTaskId", "").isdigit()}
        if len(by_task) == tasks and all(r["JobState"] in FINISHED for r in by_task.values()):
            return by_task
        if time.monotonic() > deadline:
            cluster.run("scancel", job_id)
            pytest.fail(f"job array {job_id} not finished after {timeout:.0f} s:\n{shown.stdout}")
        time.sleep(0.5)


def test_job_array_on_slurm_builds_every_shard_then_the_final_run_reuses_and_verifies(
        slurm_cluster: SlurmCluster, arc_repo: Path, arc_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "array"
    planned = run_push(arc_repo, "--bids-root", str(arc_tree), "--out", str(out), "--plan-only",
                       "--no-progress", *SIZES)
    assert planned.returncode == 0, planned.stderr
    n = len(planned.stdout.strip().splitlines())  # one line per shard
    assert n >= 4 and (out / ".bids_hf" / "plan.json").is_file()
    assert not list(out.rglob("*.parquet"))
    hint = re.search(r"sbatch --array=0-(\d+) slurm/build_shards\.sbatch", planned.stderr)
    assert hint and int(hint.group(1)) == n - 1, planned.stderr

    # The generated repo's script as it ships, two shards per task. sbatch exports this
    # environment to the tasks: PATH puts this Python first, for the script's `python`.
    per_task = 2
    tasks = (n + per_task - 1) // per_task
    env = {**slurm_cluster.env, "BIDS_ROOT": str(arc_tree), "OUT": str(out),
           "SHARDS_PER_TASK": str(per_task),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    submitted = slurm_cluster.run("sbatch", "--parsable", f"--array=0-{tasks - 1}",
                                  "slurm/build_shards.sbatch", cwd=arc_repo, env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    finished = wait_for_array(slurm_cluster, job_id, tasks)
    seconds = time.perf_counter() - t0
    logs = {k: arc_repo / f"slurm-{job_id}_{k}.out" for k in finished}  # the script's --output
    for k, record in sorted(finished.items()):
        log = logs[k].read_text() if logs[k].is_file() else f"(no {logs[k].name})"
        assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), \
            f"task {k}: {record['JobState']} exit {record['ExitCode']}\n{log}"
        first = k * per_task
        assert f"built shards {first}-{first + per_task - 1}:" in log, log
    print(f"\n{tasks} array tasks ({n} shards) done in {seconds:.1f} s")
    built = shard_mtimes(out)
    assert len(built) == n and not (out / "README.md").exists()

    # From the login node: every shard is reused (the progress bar says so), then verified.
    final = run_push(arc_repo, "--bids-root", str(arc_tree), "--out", str(out))
    assert final.returncode == 0, final.stderr
    assert f"Writing shards ({n} reused)" in final.stderr, final.stderr
    # "OK:" comes only after every check of the staged folder passed.
    assert not re.search(r"^FAIL", final.stderr, re.MULTILINE), final.stderr
    assert final.stdout.startswith("OK: ") and f"{n} shard(s)" in final.stdout
    assert shard_mtimes(out) == built, "the final run rewrote shards the array built"

    # The same tree built on one machine stages byte-identical files.
    reference = tmp_path / "one-machine"
    alone = run_push(arc_repo, "--bids-root", str(arc_tree), "--out", str(reference),
                     "--no-progress", *SIZES)
    assert alone.returncode == 0, alone.stderr
    assert staged_digests(out) == staged_digests(reference)
    assert len(staged_digests(out)) == n + 1
