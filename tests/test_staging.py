"""Staging that survives the machine and hostile trees: full disk, concurrent runs, files that
change or are absurd, names that would break a message. Each ends in one message that names
the file or folder and says what to do, exits with its category's code, never a traceback,
and loses nothing: the rerun resumes to output byte-identical to a clean build.

Each case, and the test that covers it (``[...]``: parametrizations):

* ``--out`` on a small filesystem that fills during a shard, with one writer process and with
  two (``--num-proc 6``): ``test_out_on_a_small_filesystem_that_fills_during_a_shard[1|6]``
* the disk fills while writing ``qc.png``, the README, the manifest or the marker (or a
  shard's record): ``test_disk_fills_while_writing_the_card_manifest_marker_or_a_record``
* two runs on the same ``--out``: ``test_two_runs_on_the_same_out``
* a source changes size during the build: ``test_a_source_that_changes_size_during_the_build``
* a 10,000-deep JSON sidecar or ``dataset_description.json``:
  ``test_a_10000_deep_json_sidecar_or_dataset_description[sidecar|dataset_description]``
* a symlink to an image outside the dataset: in ``test_checks.py``,
  ``test_bad_input_stops_before_anything_is_built[a link that leaves the dataset]`` (and
  ``test_a_link_into_the_annex_object_store_is_fine``)
* ``/etc/passwd`` linked as ``sub-…_T1w.nii.gz`` with ``--no-integrity``: in
  ``test_checks.py``, ``test_etc_passwd_linked_as_an_image_never_reaches_a_shard``
* ``<script>``, ``<img onerror>``, a ``javascript:`` DOI, ``|`` and newlines in
  ``dataset_description.json``: in ``test_card.py``,
  ``test_text_from_the_dataset_cannot_inject_markup``
* a source rewritten with the same size and mtime: in ``test_shards.py``,
  ``test_a_source_rewritten_with_the_same_size_and_mtime_gets_its_shard_rebuilt``
* a file name with a newline: ``test_a_file_name_with_a_newline_is_shown_escaped[...]`` and
  ``test_a_file_name_with_a_newline_is_shown_escaped_when_it_changes_mid_build``

and one test per exit code of push.py (``test_exit_code_*``): 1 checks, 2 input, 3 hub,
4 environment, 70 bug, 130 interrupted.

A small filesystem is a tmpfs mounted for the test (root only: the tests skip elsewhere).
"The disk fills" is another program taking the free space while push.py runs, after its
free-space check passed: a thread that allocates a file once a condition on the staging
folder holds, either all the space left or exactly enough that one given write fails
(measured from a clean build on the same kind of filesystem). Most runs call push.py's
``main`` in this process, as push.py does; the lock test runs push.py processes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from bids_hf import BidsBuilder, collect
from bids_hf._cli import main
from bids_hf._plan import plan_shards
from bids_hf._state import StagingLock, is_verified
from bids_hf._util import shown
from conftest import load_schema, run_push

from examples.cohorts import make_arc

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

# Nine shards of one or two row groups (one session each), each written page by page.
SIZES = ("--max-shard-size", "2MB", "--row-group-size", "100KB")
QUIET = ("--no-progress", "--no-bids-validator")
FS_SIZE = 48 << 20  # the pre-flight wants the shards (~12.6 MB) + 2% + 16 MB


class Arc(BidsBuilder):
    """What the generated repo's arc.py is, for push.py's ``main`` run in this process."""

    SCHEMA = load_schema("arc")
    DATASET_ID = "arc"


@dataclass
class Run:
    code: int
    err: str  # stderr: every message
    out: str  # stdout: results only


def push_here(capsys: pytest.CaptureFixture[str], root: Path, out: Path, *args: str) -> Run:
    """push.py's command line in this process (``main``, as push.py calls it)."""
    capsys.readouterr()
    code = main(lambda: Arc, [*QUIET, "--bids-root", str(root), "--out", str(out), *args])
    captured = capsys.readouterr()
    return Run(code, captured.err, captured.out)


def assert_one_message(run: Run, code: int, *needles: str) -> None:
    """Exit ``code`` with one error message holding every needle; no traceback."""
    assert run.code == code, run.err
    assert "Traceback" not in run.err and "Exception ignored" not in run.err, run.err
    errors = [line for line in run.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.err
    for needle in needles:
        assert needle in run.err, f"{needle!r} not in:\n{run.err}"


@pytest.fixture(autouse=True)
def _progress_bars_restored() -> Iterator[None]:
    """``--no-progress`` switches huggingface_hub's bars off process-wide; other tests may
    count on them."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    before = are_progress_bars_disabled()
    yield
    if not before:
        enable_progress_bars()


# -- trees, filesystems, and another program filling the disk -----------------------------------


@pytest.fixture(scope="module")
def sized_arc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ARC-shaped, 12 MB of images in 14 sessions (read-only: copy it to modify it)."""
    return make_arc(tmp_path_factory.mktemp("sized") / "ds", subjects=6, shape=(40, 40, 28),
                    volumes=8)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem (tmpfs) needs root")
    for options in (f"size={size},huge=never", f"size={size}"):  # pages of 4 KB, if it can
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            break
    else:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)  # busy: detach it


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "fs", FS_SIZE) as fs:
        yield fs


def used(fs: Path) -> int:
    st = os.statvfs(fs)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


class When(threading.Thread):
    """Do ``action`` once ``condition()`` holds (polled every millisecond) while a run goes on."""

    def __init__(self, condition: Callable[[], bool], action: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.condition, self.action = condition, action
        self.fired = threading.Event()
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                if self.condition():
                    self.action()
                    self.fired.set()
                    return
            except BaseException as err:  # noqa: BLE001  (reported by __exit__)
                self.error = err
                return
            time.sleep(0.001)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error


class Filler:
    """Another program filling the disk: a file that takes the free space of ``fs``."""

    def __init__(self, fs: Path) -> None:
        self.path = fs / "filler"

    def take_all(self) -> None:
        """Every free byte, however much the run writes meanwhile. In pieces: a refused
        fallocate on tmpfs gives back all it had taken, which would let the run go on."""
        with open(self.path, "ab") as f:
            for piece in (1 << 20, 64 << 10, 4 << 10):
                while True:
                    try:
                        os.posix_fallocate(f.fileno(), f.seek(0, os.SEEK_END), piece)
                    except OSError as err:
                        if err.errno != errno.ENOSPC:
                            raise
                        break

    def leave_room_for(self, used_by_the_run: int) -> None:
        """Exactly enough that the run can use ``used_by_the_run`` bytes and not a page more."""
        st = os.statvfs(self.path.parent)
        with open(self.path, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, st.f_blocks * st.f_frsize - used_by_the_run)

    def remove(self) -> None:
        self.path.unlink()


# -- what a staging folder holds ---------------------------------------------------------------


def digests(out: Path, card: bool = True) -> dict[str, str]:
    """sha256 of the shards (configs' too) and the card: what a clean build must reproduce
    byte for byte."""
    files = [*sorted((out / "data").rglob("*.parquet")), *([out / "README.md"] if card else [])]
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def recorded_shards(out: Path) -> dict[str, int]:
    """Shards with a record (finished and verified) -> mtime of the shard file."""
    records = out / ".bids_hf" / "shards"
    return {p.stem: (out / "data" / f"{p.stem}.parquet").stat().st_mtime_ns
            for p in records.glob("*.json")} if records.is_dir() else {}


def half_written(out: Path) -> list[str]:
    """Temporary files, and empty ones (the lock file, empty between runs, aside)."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                  and (p.name.endswith(".tmp") or (p.stat().st_size == 0 and p.name != "lock")))


def tmp_being_written(out: Path) -> bool:
    data = out / "data"
    with contextlib.suppress(OSError):  # renamed between the listing and the stat
        return any(p.stat().st_size > 0 for p in data.glob(".*.tmp"))
    return False


def any_shard_recorded(out: Path) -> bool:
    records = out / ".bids_hf" / "shards"
    return records.is_dir() and any(records.glob("*.json"))


# Written by a run after its shards, in this order (a clean build writes nothing else after
# its last shard file). The last shard's record is written after every other shard's.
LATE_WRITES = ["shard record", "qc.png", "README.md", "manifest", "marker"]


@dataclass(frozen=True)
class Reference:
    digests: dict[str, str]
    used_during_run: int  # bytes in use on its filesystem at the end of the run (lock held)
    late: dict[str, int]  # bytes allocated to each of LATE_WRITES
    late_files: dict[str, str]
    shards: int


@pytest.fixture(scope="module")
def reference(sized_arc: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """A clean build on a filesystem of its own: its digests, and how much space it takes."""
    with mounted_tmpfs(tmp_path_factory.mktemp("reference") / "fs", FS_SIZE) as fs:
        out = fs / "staged"
        said = io.StringIO()
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            code = main(lambda: Arc, [*QUIET, *SIZES, "--bids-root", str(sized_arc),
                                      "--out", str(out)])
        assert code == 0, said.getvalue()
        names = sorted(p.name for p in (out / "data").glob("*.parquet"))
        late_files = {"shard record": f".bids_hf/shards/{Path(names[-1]).stem}.json",
                      "qc.png": "qc.png", "README.md": "README.md",
                      "manifest": ".bids_hf/manifest.json", "marker": ".bids_hf/verified.json"}
        with StagingLock(out):  # as during a run: the lock file names its holder
            in_use = used(fs)
        yield Reference(digests(out), in_use,
                        {k: allocated(out / f) for k, f in late_files.items()}, late_files,
                        len(names))


# -- a full disk -----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_proc", [1, 6])
def test_out_on_a_small_filesystem_that_fills_during_a_shard(
        num_proc: int, sized_arc: Path, reference: Reference, small_fs: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = small_fs / "staged"
    args = (*SIZES, "--num-proc", str(num_proc))
    filler = Filler(small_fs)
    # Once a shard is finished and another is being written, the disk fills up.
    with When(lambda: any_shard_recorded(out) and tmp_being_written(out),
              filler.take_all) as disk_fills:
        run = push_here(capsys, sized_arc, out, *args)
    assert disk_fills.fired.is_set(), "the build ended before the disk filled"
    assert_one_message(run, 4, f"No space left on the device of {out} (",
                       "more are needed", "Free some space or choose another --out")
    assert not half_written(out)
    finished = recorded_shards(out)
    assert 0 < len(finished) < reference.shards
    assert not is_verified(out) and not (out / "README.md").exists()

    # Rerun on the still full disk: refused before anything is written, with the numbers.
    run = push_here(capsys, sized_arc, out, *args)
    assert_one_message(run, 4, f"{out} has ", " free; this build writes about ",
                       "Nothing was written.")
    assert recorded_shards(out) == finished and not half_written(out)

    filler.remove()
    run = push_here(capsys, sized_arc, out, *args)
    assert run.code == 0, run.err
    assert f"{len(finished)} reused" in run.err
    assert {n: t for n, t in recorded_shards(out).items() if n in finished} == finished, \
        "shards finished before the disk filled were rewritten"
    assert digests(out) == reference.digests
    assert not half_written(out) and is_verified(out)


@pytest.mark.parametrize("target", LATE_WRITES)
def test_disk_fills_while_writing_the_card_manifest_marker_or_a_record(
        target: str, sized_arc: Path, reference: Reference, small_fs: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The disk fills early, leaving room for everything the run writes before ``target``
    and not a page more, so exactly that write fails."""
    out = small_fs / "staged"
    before_target = reference.used_during_run - sum(
        reference.late[w] for w in LATE_WRITES[LATE_WRITES.index(target):])
    filler = Filler(small_fs)
    with When(lambda: tmp_being_written(out),
              lambda: filler.leave_room_for(before_target)) as disk_fills:
        run = push_here(capsys, sized_arc, out, *SIZES)
    assert disk_fills.fired.is_set(), "the build ended before the disk filled"
    assert_one_message(run, 4, f"No space left on the device of {out} (", "more are needed")
    assert not (out / reference.late_files[target]).exists(), f"{target} was written"
    assert all((out / reference.late_files[w]).exists()
               for w in LATE_WRITES[:LATE_WRITES.index(target)]), "an earlier write failed"
    assert not half_written(out) and not is_verified(out)
    finished = recorded_shards(out)

    filler.remove()
    run = push_here(capsys, sized_arc, out, *SIZES)
    assert run.code == 0, run.err
    assert {n: t for n, t in recorded_shards(out).items() if n in finished} == finished
    assert digests(out) == reference.digests
    assert not half_written(out) and is_verified(out)


# -- one run per staging folder ----------------------------------------------------------------


def test_a_filesystem_without_locks_stages_unlocked_and_says_so(
        arc_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """NFS mounted with nolock answers flock with ENOLCK (Lustre with noflock: ENOSYS). No
    such mount can be made here, so flock on the staging folder's lock file answers as it
    does there (datasets' own cache locks, elsewhere, work as usual)."""
    import fcntl

    from conftest import run_pipeline

    real_flock = fcntl.flock

    def flock(f: object, operation: int) -> None:
        if str(getattr(f, "name", "")).endswith(os.path.join(".bids_hf", "lock")) and \
                operation & (fcntl.LOCK_EX | fcntl.LOCK_SH):
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        real_flock(f, operation)  # type: ignore[arg-type]

    monkeypatch.setattr(fcntl, "flock", flock)
    out = tmp_path / "staged"
    run_pipeline(arc_tree, load_schema("arc"), out)  # asserts the folder verified
    assert is_verified(out)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"{out} does not support file locks (No locks available)" in m for m in warned)

    # Any other failure of flock is not taken for a missing feature.
    def broken(f: object, operation: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"), StagingLock(tmp_path / "other"):
        pass


def test_two_runs_on_the_same_out(arc_repo: Path, sized_arc: Path, reference: Reference,
                                  tmp_path: Path) -> None:
    out = tmp_path / "staged"
    command = [sys.executable, "push.py", *QUIET, *SIZES, "--bids-root", str(sized_arc),
               "--out", str(out)]
    lock = out / ".bids_hf" / "lock"

    def holder() -> dict[str, object] | None:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(lock.read_text())
        return None

    first = subprocess.Popen(command, cwd=arc_repo, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (holder() or {}).get("pid") != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, \
                "the first run ended before it was seen holding the folder"
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)  # it holds the folder for as long as the test needs
        plan_before = (out / ".bids_hf" / "plan.json").read_bytes() \
            if (out / ".bids_hf" / "plan.json").exists() else None

        # A second run, with another plan, is turned away and writes nothing.
        second = run_push(arc_repo, *QUIET, "--max-shard-size", "1MB", "--row-group-size",
                          "100KB", "--bids-root", str(sized_arc), "--out", str(out))
        assert_one_message(
            Run(second.returncode, second.stderr, second.stdout), 4,
            f"{out} is in use by another run (process {first.pid} on {socket.gethostname()} "
            "since ", ": " + " ".join(command[1:])[:60], "Wait for it to finish or stop it")
        assert "resume" not in second.stderr.lower()
        plan_after = (out / ".bids_hf" / "plan.json").read_bytes() \
            if (out / ".bids_hf" / "plan.json").exists() else None
        assert plan_after == plan_before

        # The first run dies without a chance to clean up: its lock file stays behind.
        first.kill()
        first.wait(timeout=30)
        assert (holder() or {}).get("pid") == first.pid
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)

    third = run_push(arc_repo, *command[2:])
    assert third.returncode == 0, third.stderr
    # (The baked repo's card has its README's prose, which the reference's has not.)
    assert digests(out, card=False) == {k: v for k, v in reference.digests.items()
                                        if k != "README.md"}, "shards of two plans are mixed"
    manifest = json.loads((out / ".bids_hf" / "manifest.json").read_text())
    assert sorted(p.relative_to(out).as_posix() for p in (out / "data").rglob("*")
                  if p.is_file()) == sorted(f for f in manifest["files"] if f.startswith("data/"))


# -- sources that change, and absurd ones ------------------------------------------------------


def test_a_source_that_changes_size_during_the_build(sized_arc: Path, reference: Reference,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(shutil.copytree(sized_arc, tmp_path / "ds", symlinks=True))
    rowset = collect(root, load_schema("arc"))
    last = plan_shards(rowset, SIZES[1], SIZES[3]).shards[-1]
    victim = next(f.path for i in last.rows for _, f in rowset.rows[i].files())
    original = (root / victim).read_bytes()
    out = tmp_path / "staged"

    def append() -> None:
        with open(root / victim, "ab") as f:
            f.write(b"\0" * 4096)

    with When(lambda: any_shard_recorded(out), append) as changes:
        run = push_here(capsys, root, out, *SIZES)
    assert changes.fired.is_set(), "the build ended before the source changed"
    assert_one_message(run, 2, victim, "changed", "Rerun once the data stop changing")
    assert not is_verified(out) and not (out / ".bids_hf" / "manifest.json").exists()
    assert not half_written(out)
    finished = recorded_shards(out)
    assert Path(last.name).stem not in finished

    # Rerunning resumes, as the message says, once the data stop changing.
    (root / victim).write_bytes(original)
    run = push_here(capsys, root, out, *SIZES)
    assert run.code == 0, run.err
    assert {n: t for n, t in recorded_shards(out).items() if n in finished} == finished
    assert digests(out) == reference.digests


def test_a_source_overwritten_in_place_after_the_plan_line(arc_repo: Path, arc_copy: Path,
                                                           tmp_path: Path) -> None:
    """Same size, mtime put back: only the ctime (or the bytes) can tell. The run is paused
    as soon as it prints its plan, the image changed, then the run resumed."""
    victim = max(arc_copy.glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    out = tmp_path / "staged"
    with subprocess.Popen([sys.executable, "push.py", "--no-progress", "--bids-root",
                           str(arc_copy), "--out", str(out)], cwd=arc_repo,
                          stderr=subprocess.PIPE, text=True) as run:
        assert run.stderr is not None
        said = []
        for line in run.stderr:
            said.append(line)
            if line.startswith("plan:"):
                run.send_signal(signal.SIGSTOP)
                break
        assert said and said[-1].startswith("plan:"), "".join(said)
        st = victim.stat()
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert victim.stat().st_size == st.st_size
        run.send_signal(signal.SIGCONT)
        said.append(run.stderr.read())
        assert run.wait(timeout=300) == 2, "".join(said)
    err = "".join(said)
    assert f"{victim.relative_to(arc_copy).as_posix()} changed after the tree was indexed" in err
    assert "Traceback" not in err
    assert not is_verified(out) and not (out / ".bids_hf" / "manifest.json").exists()
    assert not half_written(out)


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def deep_published_sidecar(root: Path) -> str:
    """A bold run's sidecar, which the ARC schema publishes (sidecar=True)."""
    sidecar = min(root.glob("sub-*/ses-*/func/*_task-rest_run-1_bold.json"))
    sidecar.write_text('{"PhaseEncodingDirection": "j-", "Nested": ' + nested(10_000) + "}")
    return sidecar.relative_to(root).as_posix()


def deep_description(root: Path) -> str:
    (root / "dataset_description.json").write_text(
        '{"Name": "ARC", "BIDSVersion": "1.10.0", "Nested": ' + nested(10_000) + "}")
    return "dataset_description.json"


@pytest.mark.parametrize("spoil", [deep_published_sidecar, deep_description],
                         ids=["sidecar", "dataset_description"])
def test_a_10000_deep_json_sidecar_or_dataset_description(
        spoil: Callable[[Path], str], arc_copy: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    named = spoil(arc_copy)
    out = tmp_path / "staged"
    run = push_here(capsys, arc_copy, out)
    assert_one_message(run, 2, f"Cannot read {named}", "nested too deeply",
                       "Fix or remove the file")
    assert "resume" not in run.err.lower() and not (out / "data").exists()


# -- names that would break a message ------------------------------------------------------------

EVIL = "evil\nname"


def evil_unclaimed(root: Path) -> tuple[str, ...]:
    """A NIfTI no column claims (ARC publishes no PD): listed in the coverage report."""
    anat = min(root.glob("sub-*/ses-*/anat"))
    shutil.copy(min(anat.glob("*_T1w.nii.gz")), anat / f"{EVIL}_PD.nii.gz")
    return ()


def evil_unclaimed_strict(root: Path) -> tuple[str, ...]:
    evil_unclaimed(root)
    return ("--strict",)


def evil_not_fetched(root: Path) -> tuple[str, ...]:
    """A T1w the column claims, whose annexed content is not here (a broken link)."""
    anat = min(root.glob("sub-*/ses-*/anat"))
    (anat / f"{EVIL}_T1w.nii.gz").symlink_to("../../../.git/annex/objects/XX/absent.nii.gz")
    return ()


def evil_deep_sidecar(root: Path) -> tuple[str, ...]:
    """A top-level sidecar of every rest run, too deep to read."""
    (root / f"{EVIL}_task-rest_bold.json").write_text(nested(10_000))
    return ()


NEWLINE_CASES = {  # case -> (spoil the tree, exit code)
    "unclaimed": (evil_unclaimed, 0),
    "unclaimed, strict": (evil_unclaimed_strict, 1),
    "claimed, not fetched": (evil_not_fetched, 1),
    "sidecar too deep": (evil_deep_sidecar, 2),
}


@pytest.mark.parametrize("case", list(NEWLINE_CASES))
def test_a_file_name_with_a_newline_is_shown_escaped(
        case: str, arc_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spoil, code = NEWLINE_CASES[case]
    args = spoil(arc_copy)
    run = push_here(capsys, arc_copy, tmp_path / "staged", *args)
    assert run.code == code, run.err
    assert shown(EVIL) == "evil\\nname" and "evil\\nname" in run.err
    # A raw newline would start a line with the rest of the name, out of the report's layout.
    assert not any(line.startswith("name_") for line in run.err.splitlines()), run.err
    assert "Traceback" not in run.err


def test_a_file_name_with_a_newline_is_shown_escaped_when_it_changes_mid_build(
        sized_arc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(shutil.copytree(sized_arc, tmp_path / "ds", symlinks=True))
    anat = max(root.glob("sub-*/ses-*/anat"))  # the last session: the last shard
    evil = anat / f"{EVIL}_T1w.nii.gz"
    shutil.copy(min(anat.glob("*_T1w.nii.gz")), evil)
    out = tmp_path / "staged"

    def append() -> None:
        with open(evil, "ab") as f:
            f.write(b"\0" * 4096)

    with When(lambda: any_shard_recorded(out), append) as changes:
        run = push_here(capsys, root, out, *SIZES)
    assert changes.fired.is_set()
    assert_one_message(run, 2, "evil\\nname_T1w.nii.gz", "changed")
    assert not any(line.startswith("name_") for line in run.err.splitlines()), run.err


# -- exit codes, one per category ------------------------------------------------------------


def test_exit_code_1_when_a_check_fails(arc_copy: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    image = min(arc_copy.rglob("*_T1w.nii.gz"))
    image.write_bytes(b"")
    run = push_here(capsys, arc_copy, tmp_path / "staged")
    assert_one_message(run, 1, image.relative_to(arc_copy).as_posix(), "are 0 bytes",
                       "nothing was built")


def test_exit_code_2_for_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = push_here(capsys, tmp_path / "no-such-root", tmp_path / "staged")
    assert_one_message(run, 2, f"BIDS root {tmp_path / 'no-such-root'} does not exist")


def test_exit_code_3_when_the_hub_cannot_be_used(arc_tree: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    run = push_here(capsys, arc_tree, tmp_path / "staged", "--repo-id", "test-org/arc")
    assert_one_message(run, 3, "no Hugging Face token found", "Nothing was built")


def test_exit_code_4_when_this_machine_stands_in_the_way(arc_tree: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    out = tmp_path / "staged"
    with StagingLock(out):
        run = push_here(capsys, arc_tree, out)
    assert_one_message(run, 4, f"{out} is in use by another run (process {os.getpid()} on "
                               f"{socket.gethostname()} since ")


def failing_builder(error: BaseException) -> Callable[[], type[BidsBuilder]]:
    def load() -> type[BidsBuilder]:
        raise error

    return load


def test_exit_code_70_for_a_bug(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(failing_builder(ZeroDivisionError("a bug")),
                ["--bids-root", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 70
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "error: unexpected failure (traceback above); please report it" in err


def test_exit_code_130_when_interrupted(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    capsys.readouterr()
    code = main(failing_builder(KeyboardInterrupt()),
                ["--bids-root", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 130
    assert err.startswith("interrupted.") and "Traceback" not in err
