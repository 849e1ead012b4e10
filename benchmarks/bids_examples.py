"""Real BIDS layouts through the newcomer path, default flags: how many stage and round-trip.

    python -m benchmarks.bids_examples [--examples DIR] [--only NAME ...] [--jobs N]
                                       [--json FILE] [--target 95] [--template DIR] [--keep]

DIR (default ``$BIDS_EXAMPLES``, else ``../shared/bids-examples`` beside this repository)
holds datasets shaped like the public bids-examples collection, one folder each.

Which datasets count: every folder of DIR with a ``dataset_description.json`` and at least
one ``*.nii`` / ``*.nii.gz`` file anywhere below it (``derivatives/`` and ``sourcedata/``
included). So anatomical, functional, diffusion, ASL, PET, quantitative MRI, atlases,
derivatives, and the EEG/iEEG/MEG/MRS datasets that carry NIfTI images (an anatomical scan,
NIfTI-MRS) are in; EEG, MEG, iEEG, EMG, fNIRS, eye-tracking, motion and microscopy
datasets without a NIfTI file are out (nothing to embed), and so are folders that are not
datasets (no ``dataset_description.json``).

For each dataset, as a maintainer would run it:

1. copy it to a temporary folder (symlinks kept as links);
2. replace every image that nibabel cannot read in full (0 bytes, a header without its
   data, a truncated gzip) by a tiny valid NIfTI-1 of the same name. Images that read
   are kept as they are, real content included (NIfTI-2/CIFTI too: refusing those is the
   core's call, and it is measured). Replacements are 4-D where the name says bold, cbv,
   dwi, asl or pet, or where the original header says so, with as many volumes as the
   ``.bval``, ``_aslcontext.tsv`` or ``FrameTimesStart`` say and the sidecar's
   ``RepetitionTime`` (BIDS inheritance), so the validator's sidecar checks make sense;
3. in a copy of the template baked once with cookiecutter, write the inferred schema
   (``push.py --infer-schema``, with ``--write`` when push.py has it), then run
   ``push.py --bids-root R --out O --no-progress`` and nothing else;
4. on success, load every split of O with ``datasets.load_dataset`` (image columns cast to
   ``Nifti(decode=False)``) and compare each embedded image's bytes with the file its
   ``path`` names; every image push.py says it claimed must be there, and a NIfTI on
   disk that is not embedded must have been reported as unclaimed.

Outcome per dataset: ``ok``; ``refused`` (non-zero exit with a message); ``crash`` (a
Python traceback, or no answer in time); ``roundtrip-mismatch`` (exit 0 but the loaded
data differ from the sources, miss a claimed image, or drop one silently).
The exit code is 0 when the share of ``ok`` reaches ``--target`` percent.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from examples import TEMPLATE_ROOT  # puts the vendored core on the path (benchmarks/__init__)

NIFTI_EXTS = (".nii", ".nii.gz")
FOUR_D_SUFFIXES = {"bold", "cbv", "dwi", "asl", "pet"}
MASK_SUFFIXES = {"mask", "dseg", "roi"}
SHAPE = (6, 6, 4)
DEFAULT_VOLUMES, MAX_VOLUMES = 3, 512
PUSH_TIMEOUT = 1800.0
TRACEBACK = "Traceback (most recent call last)"
# push.py's row line: "rows: 16 (subjects) x 7 columns, 80 images claimed, 0 unclaimed"
CLAIMED = re.compile(r"(\d+) images claimed, (\d+) unclaimed")


def default_examples() -> Path:
    env = os.environ.get("BIDS_EXAMPLES")
    return Path(env) if env else TEMPLATE_ROOT.parent / "shared" / "bids-examples"


# --------------------------------------------------------------------------- selection

def is_nifti(name: str) -> bool:
    return name.endswith(NIFTI_EXTS)


def nifti_files(root: Path) -> list[Path]:
    """Every NIfTI below ``root`` (links not followed into directories), sorted."""
    found = [Path(d) / f for d, _, files in os.walk(root) for f in files if is_nifti(f)]
    return sorted(found)


def deliberately_skipped(root: Path, rel: str) -> bool:
    """A file the dataset itself says is not data: under a hidden folder, or matched by its
    ``.bidsignore`` (gitignore-like: a pattern with ``/`` matches from the root, one without
    matches any path component)."""
    parts = rel.split("/")
    if any(p.startswith(".") for p in parts[:-1]):
        return True
    ignore = root / ".bidsignore"
    if not ignore.is_file():
        return False
    for line in ignore.read_text(encoding="utf-8").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        bare = pattern.strip("/")
        if "/" in pattern.rstrip("/"):
            prefixes = ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            if any(fnmatch.fnmatchcase(p, bare) for p in prefixes):
                return True
        elif any(fnmatch.fnmatchcase(p, bare) for p in parts):
            return True
    return False


def select(examples: Path) -> tuple[list[str], dict[str, str]]:
    """(datasets that count, {folder: why it does not})."""
    chosen: list[str] = []
    excluded: dict[str, str] = {}
    for folder in sorted(p for p in examples.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue
        if not (folder / "dataset_description.json").is_file():
            excluded[folder.name] = "not a dataset (no dataset_description.json)"
        elif not nifti_files(folder):
            datatypes = sorted({_datatype(p.relative_to(folder)) for p in folder.glob("sub-*/**/*")
                                if p.is_file()} - {""})
            excluded[folder.name] = f"no NIfTI file (datatypes: {', '.join(datatypes) or '-'})"
        else:
            chosen.append(folder.name)
    return chosen, excluded


def _datatype(rel: Path) -> str:
    """``sub-01/ses-1/eeg/x.edf`` -> ``eeg``: the first folder below subject and session."""
    folders = [p for p in rel.parts[:-1] if not p.startswith(("sub-", "ses-"))]
    return folders[0] if folders else ""


# --------------------------------------------------------------------------- filling

def _write_plain(path: Path, shape: tuple[int, ...], kind: str = "brain",
                 tr: float | None = None) -> Path:
    """A small NIfTI-1 image with nibabel, for a core that offers no writer."""
    import nibabel as nib
    import numpy as np

    data = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape) % 7
    img = nib.Nifti1Image((data > 3).astype(np.uint8) if kind == "mask" else data, np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None and len(shape) == 4:
        img.header.set_zooms((1.0, 1.0, 1.0, tr))
    nib.save(img, str(path))
    return path


def nifti_writer() -> Any:
    """The core's NIfTI writer, wherever this version of the core keeps it."""
    for module in ("bids_hf.testing", "bids_hf._synthetic"):
        try:
            return __import__(module, fromlist=["write_nifti"]).write_nifti
        except (ImportError, AttributeError):
            continue
    return _write_plain


def unreadable(path: Path) -> str | None:
    """Why nibabel cannot read this image in full, or None when it can."""
    import nibabel as nib
    import numpy as np

    if path.stat().st_size == 0:
        return "0 bytes"
    if path.stat().st_size > 1 << 30:
        return None  # a real image; decoding it all here would only cost memory
    try:
        img: Any = nib.load(str(path))
        np.asanyarray(img.dataobj)
    except Exception as err:  # noqa: BLE001  (any failure means: not a usable image)
        return f"{type(err).__name__}: {str(err)[:120]}"
    return None


def _parts(name: str) -> tuple[set[str], str]:
    """(entity tokens, suffix) of a BIDS file name."""
    stem = name.split(".", 1)[0]
    tokens = stem.split("_")
    return {t for t in tokens[:-1] if "-" in t}, tokens[-1]


def inherited(image: Path, root: Path, suffix: str, ext: str) -> list[Path]:
    """Files that apply to ``image`` by BIDS inheritance (``suffix`` + ``ext``, entities a
    subset of the image's), from the root down to the image's own folder."""
    entities, _ = _parts(image.name)
    folders = [image.parent, *image.parent.parents]
    folders = folders[: folders.index(root) + 1] if root in folders else [image.parent]
    found: list[Path] = []
    for folder in reversed(folders):
        here = [p for p in folder.glob(f"*{suffix}{ext}")
                if p.name.endswith(f"_{suffix}{ext}") or p.name == f"{suffix}{ext}"]
        here = [p for p in here if _parts(p.name)[1] == suffix
                and _parts(p.name)[0] <= entities and p.is_file()]
        found += sorted(here, key=lambda p: len(_parts(p.name)[0]))
    return found


def sidecar(image: Path, root: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in inherited(image, root, _parts(image.name)[1], ".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            merged.update(data)
    return merged


def volumes_of(image: Path, root: Path, meta: dict[str, Any]) -> int | None:
    """Volumes the companions of ``image`` describe, if any does."""
    suffix = _parts(image.name)[1]
    if suffix == "dwi" and (bvals := inherited(image, root, "dwi", ".bval")):
        n = len(bvals[-1].read_text(encoding="utf-8").split())
        return n or None
    if suffix == "asl" and (context := inherited(image, root, "aslcontext", ".tsv")):
        lines = [ln for ln in context[-1].read_text(encoding="utf-8").splitlines() if ln.strip()]
        return max(len(lines) - 1, 0) or None
    frames = meta.get("FrameTimesStart") or meta.get("FrameDuration")
    if suffix == "pet" and isinstance(frames, list):
        return len(frames) or None
    return None


def header_dims(path: Path) -> int | None:
    """Number of dimensions the original header declares, when it parses."""
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        return len(img.header.get_data_shape())
    except Exception:  # noqa: BLE001  (empty or garbage: no header to follow)
        return None


def fill(root: Path) -> list[dict[str, str]]:
    """Replace each unreadable image below ``root`` by a tiny valid one; what was replaced."""
    write_nifti = nifti_writer()
    replaced: list[dict[str, str]] = []
    for image in nifti_files(root):
        target = image
        if image.is_symlink():
            resolved = image.resolve()
            if not resolved.is_relative_to(root.resolve()) or not resolved.exists():
                image.unlink()  # never write outside the copy; a dangling link gets a file
            else:
                target = resolved
        why = unreadable(target) if target.exists() else "dangling link"
        if why is None:
            continue
        suffix = _parts(image.name)[1]
        meta = sidecar(image, root)
        dims = header_dims(target) if target.exists() else None
        shape: tuple[int, ...] = SHAPE
        tr = meta.get("RepetitionTime")
        if suffix in FOUR_D_SUFFIXES or dims == 4:
            n = volumes_of(image, root, meta) or DEFAULT_VOLUMES
            shape = (*SHAPE, min(n, MAX_VOLUMES))
        if target.exists():
            target.unlink()
        write_nifti(target, shape, kind="mask" if suffix in MASK_SUFFIXES else "brain",
                    tr=float(tr) if isinstance(tr, (int, float)) and len(shape) == 4 else None)
        replaced.append({"path": image.relative_to(root).as_posix(), "was": why,
                         "shape": "x".join(map(str, shape))})
    return replaced


# --------------------------------------------------------------------------- running

@dataclass
class Outcome:
    name: str
    outcome: str = "crash"  # ok | refused | crash | roundtrip-mismatch
    stage: str = ""  # where it stopped: copy, infer, push, load, compare
    message: str = ""  # the first error block, or what did not match
    causes: list[str] = field(default_factory=list)  # failing checks / exception / mismatch kind
    nifti: int = 0
    replaced: list[dict[str, str]] = field(default_factory=list)
    claimed: int | None = None
    unclaimed: int | None = None
    embedded: int = 0
    rows: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)  # on disk, not embedded, not skipped
    skipped: list[str] = field(default_factory=list)  # .bidsignore'd or hidden, not embedded
    mismatches: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stderr: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def push_help(repo: Path) -> str:
    return subprocess.run([sys.executable, "push.py", "--help"], cwd=repo, capture_output=True,
                          text=True, check=False).stdout


def bake(template: Path, work: Path) -> Path:
    """The template baked once, as tests/conftest.py's ``bake`` does."""
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(template), no_input=True, output_dir=str(work / "baked"),
                             extra_context={"dataset_name": "bids-examples check",
                                            "dataset_slug": "bids-examples-check"}))


def error_block(stderr: str) -> tuple[str, list[str]]:
    """(the first error block of push.py's stderr, names of what failed)."""
    lines = stderr.splitlines()
    if TRACEBACK in stderr:
        start = max(i for i, ln in enumerate(lines) if ln.startswith(TRACEBACK))
        tail = [ln for ln in lines[start:] if ln.strip()]
        last = next((ln for ln in reversed(tail) if not ln.startswith(("error:", " "))),
                    tail[-1] if tail else "")
        frames = [re.sub(r'"[^"]*/(bids_hf/[^"]+)"', r"\1", ln.strip())
                  for ln in tail if ln.strip().startswith("File ")]
        ours = [f for f in frames if f.startswith("File bids_hf/")]
        where = [*ours[-2:], *(frames[-1:] if frames and frames[-1] not in ours else [])]
        return "\n".join([*where, last]), [last.split(":", 1)[0]]
    blocks: list[str] = []
    causes: list[str] = []
    for i, line in enumerate(lines):
        if match := re.match(r"\[error\] (.+):$", line):
            causes.append(match.group(1))
            body = [line]
            for nxt in lines[i + 1:]:
                if not nxt.startswith("  "):
                    break
                body.append(nxt)
            blocks.append("\n".join(body))
    final = [ln for ln in lines if ln.startswith("error:")]
    if not blocks and final:
        # The message without paths or quoted values, so one cause groups many datasets.
        label = re.sub(r"(/[^\s:]+)+", "<path>", final[0])
        causes.append(re.sub(r"[`'\"].*", "", label)[:80])
    message = "\n".join([*blocks[:1], *final[:1]]) or "\n".join(lines[-5:])
    return message, causes


def run_one(name: str, examples: str, baked: str, work: str, write_flag: bool,
            keep: bool, extra: tuple[str, ...] = ()) -> Outcome:
    result = Outcome(name)
    base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    try:
        _run(result, Path(examples) / name, base, Path(baked), write_flag, extra)
    except Exception as err:  # noqa: BLE001  (a bug of this harness: report it, keep going)
        result.outcome, result.message = "crash", f"harness: {type(err).__name__}: {err}"
        result.causes = [f"harness {type(err).__name__}"]
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return result


def _run(result: Outcome, source: Path, base: Path, baked: Path, write_flag: bool,
         extra: tuple[str, ...]) -> None:
    t = time.perf_counter()
    result.stage = "copy"
    root = Path(shutil.copytree(source, base / "bids" / source.name, symlinks=True))
    result.nifti = len(nifti_files(root))
    result.replaced = fill(root)
    repo = Path(shutil.copytree(baked, base / "repo", symlinks=True))
    out = base / "out"
    env = {**os.environ, "HF_DATASETS_CACHE": str(base / "hf-cache")}
    result.seconds["prepare"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    result.stage = "infer"
    infer = [sys.executable, "push.py", "--bids-root", str(root), "--infer-schema"]
    done = subprocess.run(infer + (["--write"] if write_flag else []), cwd=repo, env=env,
                          capture_output=True, text=True, check=False, timeout=PUSH_TIMEOUT)
    result.seconds["infer"] = round(time.perf_counter() - t, 2)
    if done.returncode != 0 or not (write_flag or done.stdout.strip()):
        _failed(result, done.returncode, done.stderr or "(no schema printed)")
        return
    if write_flag and (repo / "schema.py").read_bytes() == (baked / "schema.py").read_bytes():
        raise RuntimeError("push.py --infer-schema --write left schema.py unchanged")
    if not write_flag:
        proposal = repo / "schema.proposed.py"
        proposal.write_text(done.stdout, encoding="utf-8")
        os.replace(proposal, repo / "schema.py")

    t = time.perf_counter()
    result.stage = "push"
    try:
        done = subprocess.run(
            [sys.executable, "push.py", "--bids-root", str(root), "--out", str(out),
             "--no-progress", *extra], cwd=repo, env=env, capture_output=True, text=True,
            check=False, timeout=PUSH_TIMEOUT)
    except subprocess.TimeoutExpired:
        result.outcome, result.causes = "crash", ["timeout"]
        result.message = f"push.py did not finish in {PUSH_TIMEOUT:.0f} s"
        return
    finally:
        result.seconds["push"] = round(time.perf_counter() - t, 2)
    result.exit_code, result.stderr = done.returncode, done.stderr[-20000:]
    if match := CLAIMED.search(done.stderr):
        result.claimed, result.unclaimed = int(match.group(1)), int(match.group(2))
    if done.returncode != 0:
        _failed(result, done.returncode, done.stderr)
        return

    t = time.perf_counter()
    result.stage = "load"
    compare(result, root, out, base / "hf-cache")
    result.seconds["roundtrip"] = round(time.perf_counter() - t, 2)


def _failed(result: Outcome, code: int, stderr: str) -> None:
    result.exit_code, result.stderr = code, stderr[-20000:]
    result.outcome = "crash" if TRACEBACK in stderr else "refused"
    result.message, result.causes = error_block(stderr)


# --------------------------------------------------------------------------- round trip

def _undecoded(feature: Any) -> Any:
    """``feature`` with every Nifti made ``decode=False`` (bytes + path as stored)."""
    import datasets

    if isinstance(feature, datasets.Nifti):
        return datasets.Nifti(decode=False)
    if isinstance(feature, datasets.List):
        return datasets.List(_undecoded(feature.feature), length=feature.length)
    if isinstance(feature, dict):
        return {k: _undecoded(v) for k, v in feature.items()}
    return feature


def _images(value: Any) -> Iterator[dict[str, Any]]:
    """The {bytes, path} cells inside one cell of an image column (one, list, or None)."""
    if isinstance(value, dict) and "bytes" in value:
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _images(item)


def compare(result: Outcome, root: Path, out: Path, cache: Path) -> None:
    import datasets

    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_dataset(str(out), cache_dir=str(cache))
    except Exception as err:  # noqa: BLE001  (the staged folder must load; any failure counts)
        result.outcome, result.causes = "roundtrip-mismatch", [f"load {type(err).__name__}"]
        result.message = f"datasets.load_dataset({out}) failed: {type(err).__name__}: {err}"
        return
    result.stage = "compare"
    seen: set[str] = set()
    for split, ds in loaded.items():
        result.splits[split] = len(ds)
        columns = [c for c, f in ds.features.items() if _undecoded(f) != f]
        for column in columns:
            ds = ds.cast_column(column, _undecoded(ds.features[column]))
        for row in ds.select_columns(columns):
            for column in columns:
                for cell in _images(row[column]):
                    rel = cell.get("path") or ""
                    seen.add(rel)
                    source = root / rel
                    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                        result.mismatches.append(f"{split}/{column}: stored path {rel!r} is not "
                                                 "BIDS-relative")
                    elif not source.is_file():
                        result.mismatches.append(f"{split}/{column}: {rel} not in the source")
                    elif cell.get("bytes") != source.read_bytes():
                        result.mismatches.append(f"{split}/{column}: {rel} bytes differ from "
                                                 "the source")
    result.rows = sum(result.splits.values())
    result.embedded = len(seen)
    absent = sorted({p.relative_to(root).as_posix() for p in nifti_files(root)} - seen)
    result.skipped = [p for p in absent if deliberately_skipped(root, p)]
    result.left_out = [p for p in absent if p not in result.skipped]
    if result.claimed is not None and result.claimed != len(seen):
        result.mismatches.append(f"push.py claimed {result.claimed} images, the loaded data "
                                 f"hold {len(seen)}")
    # .bidsignore'd files may or may not count as unclaimed, depending on the core's policy.
    low, high = len(result.left_out), len(result.left_out) + len(result.skipped)
    if result.unclaimed is not None and not low <= result.unclaimed <= high:
        result.mismatches.append(f"{len(result.left_out)} NIfTI on disk are not in the data "
                                 f"but push.py reported {result.unclaimed} unclaimed "
                                 f"(e.g. {result.left_out[:3]})")
    if result.mismatches:
        result.outcome = "roundtrip-mismatch"
        result.causes = sorted({m.split(": ", 1)[-1].split(" (")[0][:60]
                                for m in result.mismatches})[:3]
        result.message = "\n".join(result.mismatches[:10])
    else:
        result.outcome, result.stage = "ok", "done"


# --------------------------------------------------------------------------- report

def table(results: Sequence[Outcome]) -> str:
    head = ("dataset", "outcome", "NIfTI", "filled", "rows", "embedded", "unclaimed",
            "ignored", "s", "cause")
    rows = [head]
    for r in results:
        rows.append((r.name, r.outcome, str(r.nifti), str(len(r.replaced)), str(r.rows),
                     str(r.embedded), "-" if r.unclaimed is None else str(r.unclaimed),
                     str(len(r.skipped)),
                     f"{sum(r.seconds.values()):.1f}", "; ".join(r.causes)[:70]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, default=default_examples(),
                        help="folder of BIDS datasets (default: $BIDS_EXAMPLES, else "
                             "../shared/bids-examples beside the repository)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these datasets")
    parser.add_argument("--jobs", type=int, default=1, help="datasets run at once (processes)")
    parser.add_argument("--json", type=Path, help="write per-dataset details to this file")
    parser.add_argument("--target", type=float, default=95.0, help="percent ok required")
    parser.add_argument("--template", type=Path, default=TEMPLATE_ROOT,
                        help="template to bake (default: this repository), e.g. an export "
                             "of another commit")
    parser.add_argument("--push-args", default="",
                        help="extra push.py flags, for diagnosis only (e.g. \"--allow-phi\"): "
                             "the figure that counts is the one without")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)
    extra = tuple(shlex.split(args.push_args))
    # Replacement images come from the same core as the template's (ahead of this checkout's).
    sys.path.insert(0, str(args.template.resolve() / "{{cookiecutter.dataset_slug}}"))
    if not args.examples.is_dir():
        print(f"error: no folder {args.examples}; pass --examples DIR or set BIDS_EXAMPLES.",
              file=sys.stderr)
        return 2
    chosen, excluded = select(args.examples)
    if args.only:
        unknown = [n for n in args.only if n not in chosen]
        if unknown:
            print(f"error: not among the datasets with NIfTI in {args.examples}: {unknown} "
                  f"({'; '.join(f'{n}: {excluded[n]}' for n in unknown if n in excluded)})",
                  file=sys.stderr)
            return 2
        chosen = [n for n in chosen if n in args.only]
    print(f"{len(chosen)} datasets with NIfTI in {args.examples}; {len(excluded)} excluded:")
    for name, why in excluded.items():
        print(f"  - {name}: {why}")

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bids-examples-check-"))
    try:
        baked = bake(args.template, work)
        write_flag = "--write" in push_help(baked)
        print(f"template baked in {baked}; schema written with "
              f"{'--infer-schema --write' if write_flag else '--infer-schema > schema.py'}")
        if extra:
            print(f"NOT the default flags: push.py also gets {' '.join(extra)}")
        jobs = [(n, str(args.examples), str(baked), str(work), write_flag, args.keep, extra)
                for n in chosen]
        results: list[Outcome] = []
        if args.jobs <= 1:
            results = [run_one(*job) for job in jobs]
        else:
            # Spawned, as the core's own worker processes are (bids_hf._parallel): a forked
            # child of a process that has loaded pyarrow's thread pools can deadlock.
            with ProcessPoolExecutor(max_workers=args.jobs,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(run_one, *zip(*jobs, strict=True)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0

    print()
    print(table(results))
    counts = Counter(r.outcome for r in results)
    ok = counts.get("ok", 0)
    share = 100.0 * ok / len(results) if results else 0.0
    print()
    others = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "ok")
    print(f"{ok}/{len(results)} ok = {share:.1f}% (target {args.target:.0f}%)"
          + (f"; {others}" if others else "") + f"; {wall:.0f} s wall with --jobs {args.jobs}")
    causes = Counter(c for r in results if r.outcome != "ok" for c in r.causes)
    for cause, n in causes.most_common():
        names = [r.name for r in results if cause in r.causes]
        print(f"  {n:3d}  {cause}: {', '.join(names)}")
    for r in results:
        if r.outcome != "ok":
            lines = r.message.splitlines()
            more = f"\n  ... {len(lines) - 8} more lines" if len(lines) > 8 else ""
            print(f"\n## {r.name}: {r.outcome} at {r.stage} (exit {r.exit_code})\n"
                  + "\n".join(lines[:8]) + more)
    if args.json:
        args.json.write_text(json.dumps(
            {"examples": str(args.examples), "selected": chosen, "excluded": excluded,
             "ok": ok, "total": len(results), "percent_ok": round(share, 2),
             "wall_seconds": round(wall, 1), "jobs": args.jobs, "push_args": list(extra),
             "datasets": [asdict(r) for r in results]}, indent=1), encoding="utf-8")
        print(f"\ndetails: {args.json}")
    return 0 if share >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
