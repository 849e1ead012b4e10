"""The staging folder's own state, ``OUT/.bids_hf/``: one owner for every path and record.

    .bids_hf/staging.json     which dataset this folder belongs to (a folder is never shared)
    .bids_hf/lock             held while a run writes here; says which process holds it
    .bids_hf/plan.json        the shard plan (job-array tasks read its sizes)
    .bids_hf/shards/<n>.json  one record per finished, verified shard: the resume state
    .bids_hf/manifest.json    every file to upload with size and sha256, and the sources'
    .bids_hf/verified.json    sha256 of the manifest that passed verification

Every write is atomic (temporary file in the same folder, fsync, rename, fsync of the
folder). A record that cannot be read is logged and treated as absent, so what it described
is recomputed rather than trusted. Running out of space anywhere under ``OUT`` ends in one
``DiskFullError`` naming the folder, with no temporary file left behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._errors import DiskFullError, InputError, StagingLockedError
from ._plan import ShardPlan, data_folder
from ._util import fsync_dir, human_bytes, sha256_file, shown

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

logger = logging.getLogger(__name__)

STATE_DIR = ".bids_hf"
#: Bumped when a record written by an older release cannot be trusted (then recomputed).
STATE_FORMAT = 3
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True)
class StatePaths:
    """Every path of the state folder of the staging folder ``out``."""

    out: Path

    @property
    def root(self) -> Path:
        return self.out / STATE_DIR

    @property
    def identity(self) -> Path:
        return self.root / "staging.json"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def verified(self) -> Path:
        return self.root / "verified.json"

    def shard_record(self, shard_name: str) -> Path:
        """``data/train-00000-of-00003.parquet`` -> ``shards/train-00000-of-00003.json``
        (``recorded_shards`` reverses it)."""
        return self.shards / (Path(shard_name).stem + ".json")


# -- disk space and atomic writes ----------------------------------------------------------------


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _NO_SPACE


def disk_full(folder: Path, needed: int | None = None) -> DiskFullError:
    free = free_space(folder)
    need = f" about {human_bytes(needed)} more are needed;" if needed else ""
    return DiskFullError(
        f"No space left on the device of {shown(str(folder))} ({human_bytes(free)} free;{need} "
        "nothing half-written was kept). Free some space or choose another --out, then rerun "
        "the same command: finished shards are reused.", resumable=True)


@contextlib.contextmanager
def no_space_is_an_error(folder: Path, needed: int | None = None) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into one ``DiskFullError`` for ``folder``."""
    try:
        yield
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(folder, needed) from err
        raise


def free_space(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def space_wanted(needed: int, margin: float = 0.02) -> int:
    """Free space asked for before writing ``needed`` bytes of shards: a margin for their
    footers, and room for the card, the QC picture and the state records."""
    return int(needed * (1 + margin)) + (16 << 20)


def require_free_space(folder: Path, needed: int) -> None:
    """Refuse up front when ``needed`` bytes (plus a margin for footers and the card) will
    not fit: a build that fills the disk half-way helps nobody."""
    want = space_wanted(needed)
    free = free_space(folder)
    if free < want:
        raise DiskFullError(
            f"{shown(str(folder))} has {human_bytes(free)} free; this build writes about "
            f"{human_bytes(want)}. Free {human_bytes(want - free)} or choose another --out. "
            "Nothing was written.")


#: What ``temporary_path`` names look like, to find those a killed run left behind.
TEMPORARY_GLOB = ".*.tmp"


def temporary_path(path: Path) -> Path:
    """The hidden name, beside ``path``, under which it is written before the rename."""
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one step; on failure the old file stays as it was."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with no_space_is_an_error(path.parent, len(payload)):
        try:
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: Path, what: str) -> Any | None:
    """The JSON at ``path``; ``None`` when absent. Unreadable content is logged and treated as
    absent: whatever it described is recomputed, never trusted."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        logger.warning("cannot read %s (%s): %s; it will be recomputed", what, path, err)
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly nested
        logger.warning("%s is corrupt (%s: %s); it will be recomputed", what, path, err)
        return None


# -- whose folder is this -----------------------------------------------------------------------


def claim(out: Path, dataset: str) -> StatePaths:
    """Mark ``out`` as this dataset's staging folder, refusing one that belongs to another."""
    paths = StatePaths(out)
    owner = read_json(paths.identity, "the staging folder's owner")
    if isinstance(owner, dict) and owner.get("dataset"):
        if owner["dataset"] != dataset:
            raise InputError(
                f"{shown(str(out))} is the staging folder of dataset {owner['dataset']!r}, not "
                f"{dataset!r}. "
                "Use a separate --out for each dataset.")
        return paths
    if out.exists() and any(p.name != STATE_DIR for p in out.iterdir()):
        raise InputError(
            f"{shown(str(out))} already exists and is not a staging folder. Choose an empty or "
            "new --out.")
    paths.shards.mkdir(parents=True, exist_ok=True)
    write_json(paths.identity, {"dataset": dataset})
    return paths


# -- one run at a time ----------------------------------------------------------------------------


# flock's answers on a filesystem that has no locks (ENOTSUP is EOPNOTSUPP on Linux).
_NO_FLOCK = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


class StagingLock:
    """An advisory lock on the staging folder, held for the whole run.

    A full run takes it exclusively; job-array tasks (``--shards``), which write different
    shards of one plan side by side, share it. The kernel releases it when the holder dies
    (``flock``), so a lock left by a killed run is simply taken over. The exclusive holder
    writes who it is into the lock file, which a refused run quotes.
    """

    def __init__(self, out: Path, *, shared: bool = False) -> None:
        self.paths = StatePaths(out)
        self.shared = shared
        self._file: IO[str] | None = None

    def __enter__(self) -> Self:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        f = open(self.paths.lock, "a+", encoding="utf-8")  # held until __exit__
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise StagingLockedError(
                f"{shown(str(self.paths.out))} is in use by another run "
                f"({_describe_holder(holder)}). Wait "
                "for it to finish or stop it, or use another --out.") from None
        except OSError as err:
            f.close()
            if err.errno not in _NO_FLOCK:
                raise
            # Network filesystems mounted without lock support (NFS with nolock, Lustre with
            # noflock) refuse flock. Refusing to stage there would shut users out of cluster
            # scratch space, so the run goes on unlocked and says so.
            logger.warning("%s does not support file locks (%s): this run is not protected "
                           "from a second run on the same --out; start one at a time",
                           shown(str(self.paths.out)), os.strerror(err.errno))
            return self
        if not self.shared:
            f.seek(0)
            f.truncate()
            holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(sys.argv)[:300]})
            try:  # unbuffered: a failed write must not linger in a buffer flushed at close
                os.write(f.fileno(), holder.encode())
            except OSError as err:
                # On a full disk the lock (flock) is still held; only the note of who holds
                # it is missing. The free-space check that follows says what is needed.
                if not is_disk_full(err):
                    f.close()
                    raise
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            if not self.shared:
                with contextlib.suppress(OSError):
                    self._file.truncate(0)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return shown(f"process {info['pid']} on {info['host']} since {info['since']}: "
                     f"{info['command']}")
    except (ValueError, KeyError, TypeError):
        return "a job-array task building shards, or a run that has not said who it is"


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard as it was verified: its files (the full table, and one per config)
    and every source image they embed."""

    name: str  # the full table's file; the record of the whole shard is named after it
    fingerprint: str  # the plan's fingerprint of this shard's rows and files
    rows: int
    row_groups: int
    files: dict[str, dict[str, Any]]  # file -> {"size", "sha256", "mtime_ns"} as written
    sources: dict[str, str]  # BIDS path -> sha256 of the bytes embedded (read back, equal)
    findings: list[dict[str, Any]] = field(default_factory=list)  # its images' header findings
    format: int = STATE_FORMAT

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files.values())


def read_shard_record(out: Path, shard_name: str) -> ShardRecord | None:
    data = read_json(StatePaths(out).shard_record(shard_name), f"the record of {shard_name}")
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        return None
    try:
        return ShardRecord(**data)
    except TypeError as err:
        logger.warning("the record of %s is malformed (%s); it will be rebuilt", shard_name, err)
        return None


def write_shard_record(out: Path, record: ShardRecord) -> None:
    write_json(StatePaths(out).shard_record(record.name), asdict(record))


def forget_shard(out: Path, shard_name: str) -> None:
    """Drop a shard's record so the next build rewrites it."""
    StatePaths(out).shard_record(shard_name).unlink(missing_ok=True)


def recorded_shards(out: Path) -> dict[str, Path]:
    """Shard name -> record file, for every record in the folder (``shard_record`` reversed)."""
    folder = StatePaths(out).shards
    records = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return {f"{data_folder()}/{record.stem}.parquet": record for record in records}


def save_plan(out: Path, plan: ShardPlan) -> None:
    write_atomic(StatePaths(out).plan, plan.to_json())


def load_plan(out: Path) -> ShardPlan | None:
    data = read_json(StatePaths(out).plan, "the saved shard plan")
    if data is None:
        return None
    try:
        return ShardPlan.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        logger.warning("the saved shard plan is malformed (%s); it will be recomputed", err)
        return None


@dataclass(frozen=True)
class Manifest:
    """Everything that will be uploaded, with sizes and hashes, plus what the plan was."""

    dataset: str
    bids_hf_version: str
    plan_fingerprint: str
    splits: dict[str, dict[str, int]]
    shards: list[dict[str, Any]]
    files: dict[str, dict[str, Any]]  # every uploaded file (shards included) -> size, sha256
    sources: dict[str, str] = field(default_factory=dict)  # BIDS path -> sha256 embedded
    repo_id: str | None = None  # the repo the card's usage text names
    gated: bool = False  # the card asks for a gated repo
    format: int = STATE_FORMAT

    @property
    def shard_names(self) -> list[str]:
        return [s["name"] for s in self.shards]

    @property
    def data_files(self) -> list[str]:
        """Every Parquet file: the full table's and each config's."""
        return [name for name in self.files if name.startswith("data/")]

    @property
    def data_bytes(self) -> int:
        return sum(self.files[name]["size"] for name in self.data_files)

    @classmethod
    def read(cls, out: Path) -> Manifest:
        data = read_json(StatePaths(out).manifest, "the manifest")
        try:
            if not isinstance(data, dict):
                raise TypeError("absent or not a JSON object")
            return cls(**data)
        except TypeError as err:
            raise InputError(f"No readable manifest in {shown(str(out))} ({err}). Stage it "
                             "first (push.py --bids-root ... --out ...).") from None

    def write(self, out: Path) -> None:
        write_json(StatePaths(out).manifest, asdict(self))


def mark_verified(out: Path) -> None:
    write_json(StatePaths(out).verified,
               {"manifest_sha256": sha256_file(StatePaths(out).manifest)})


def unmark_verified(out: Path) -> None:
    StatePaths(out).verified.unlink(missing_ok=True)


def is_verified(out: Path) -> bool:
    paths = StatePaths(out)
    marker = read_json(paths.verified, "the verification marker")
    try:
        return isinstance(marker, dict) and marker.get("manifest_sha256") == sha256_file(
            paths.manifest)
    except OSError:
        return False
