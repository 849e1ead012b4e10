"""Index a BIDS tree: every data file with its entities, size and pipeline, tables, sidecars.

This module owns discovery. bids2table parses entities and finds nested datasets; we call
``find_bids_datasets`` because ``index_dataset(root)`` alone skips ``derivatives/``. What
bids2table leaves out is done here, deliberately:

* ``.bidsignore`` is honoured (bids2table does not read it);
* paths are kept as found, never resolved: DataLad / git-annex trees are symlinks, and a
  broken link (annexed content not fetched) is reported, not followed;
* every ``*.nii`` / ``*.nii.gz`` on disk is listed by a separate walk, so the coverage report
  can name images that no column claimed; images inside a ``sub-*`` folder whose names do
  not follow BIDS (bids2table skips them) are indexed from their folders, so a glob column
  can still claim them;
* JSON sidecars and companions (``.bval``/``.bvec``) are resolved with the inheritance
  principle by our own walk, because ``bids2table.load_bids_metadata`` resolves symlinks.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import bids2table
import pyarrow as pa

from ._entities import NON_ENTITY_COLUMNS, parse_name
from ._errors import InputError
from ._util import natural_key, shown

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
# Subjects, or the templates of a template dataset (tpl-*, with cohort-* as its "sessions").
_SUBJECT_DIR = re.compile(r"^(sub|tpl)-[A-Za-z0-9]+$")
_SESSION_DIR = re.compile(r"^(ses|cohort)-[A-Za-z0-9]+$")
SESSION_OF = {"sub": "ses", "tpl": "cohort"}
# Never descend into these while walking for images: VCS and tool state, not data.
_SKIP_DIRS = {".git", ".datalad", ".heudiconv", ".bids_hf", "__pycache__"}


class BidsIndexError(InputError, ValueError):
    """The folder cannot be indexed as BIDS (missing, not a directory, no subjects)."""


@dataclass(frozen=True, slots=True)
class BidsFile:
    """One data file. ``path`` is POSIX and relative to the top-level BIDS root."""

    path: str
    pipeline: str | None  # None: raw data; else derivatives/<pipeline>
    entities: Mapping[str, str | int]  # bids2table short names + datatype, suffix, ext
    size: int  # -1 when the file cannot be read (e.g. a broken annex symlink)
    mtime_ns: int
    bids_named: bool = True  # False: found by the NIfTI walk, entities read from folders
    ctime_ns: int = 0  # changes on any write, even one that restores size and mtime
    bidsignored: bool = False  # listed in .bidsignore: only a glob column can claim it

    @property
    def subject(self) -> str:
        return str(self.entities["sub"] if "sub" in self.entities else self.entities["tpl"])

    @property
    def session(self) -> str | None:
        ses = self.entities.get("ses", self.entities.get("cohort"))
        return None if ses is None else str(ses)

    @property
    def extension(self) -> str:
        return str(self.entities.get("ext", ""))

    @property
    def is_nifti(self) -> bool:
        return self.extension in NIFTI_EXTENSIONS

    @property
    def dataset_root(self) -> str:
        """The BIDS-relative folder of the (raw or derivative) dataset holding this file."""
        return f"derivatives/{self.pipeline}" if self.pipeline else ""

    @property
    def tail(self) -> str:
        """What schema globs match: the path without its subject and session folders."""
        return without_row_folders(self.path)

    def sort_key(self) -> tuple[Any, ...]:
        return natural_key(self.path)


@dataclass
class BidsIndex:
    """Everything later stages need to know about a BIDS root, read once."""

    root: Path
    files: list[BidsFile]
    description: dict[str, Any]
    pipelines: dict[str, dict[str, Any]]  # pipeline -> its dataset_description.json
    subjects: list[str]  # labels of sub-* folders of the raw dataset, natural order
    sessions: dict[str, list[str]]  # subject -> labels of its ses-* folders
    nifti_on_disk: list[str]  # every NIfTI under the root (.bidsignore'd too), BIDS-relative
    ignored: list[str] = field(default_factory=list)  # files listed in .bidsignore
    unreadable: list[str] = field(default_factory=list)  # broken links / unreadable files
    subject_entity: str = "sub"  # "tpl" in a template dataset (tpl-*/cohort-* folders)
    problems: list[str] = field(default_factory=list)  # what was skipped, and why (warnings)
    _listings: dict[Path, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def file(self, path: str) -> BidsFile | None:
        return self._by_path.get(path)

    @cached_property
    def _by_path(self) -> dict[str, BidsFile]:
        return {f.path: f for f in self.files}

    # -- sidecars and companions --------------------------------------------------------
    def inherited(self, file: BidsFile, extension: str) -> list[Path]:
        """Files with ``extension`` that apply to ``file`` by the BIDS inheritance principle.

        Returned top-down (dataset root first), so JSON can be merged in order. The search
        climbs from the file's folder to the root of the dataset (raw or derivative) holding it.
        """
        return _inherited(self._listdir, self.root, file, extension)

    def _listdir(self, folder: Path) -> tuple[str, ...]:
        if folder not in self._listings:
            try:
                self._listings[folder] = tuple(sorted(os.listdir(folder)))
            except OSError:
                self._listings[folder] = ()
        return self._listings[folder]

    def sidecar(self, file: BidsFile) -> dict[str, Any]:
        """The JSON metadata of ``file``, merged top-down per the inheritance principle."""
        merged: dict[str, Any] = {}
        for path in self.inherited(file, ".json"):
            data = read_json_file(path, self.root, f"it applies to {file.path} by BIDS "
                                                   "inheritance")
            if isinstance(data, dict):
                merged.update(data)
        return merged

    def data_dictionary(self, table: str) -> dict[str, Any]:
        """The BIDS data dictionary of a table (``participants.json`` for
        ``participants.tsv``): column -> {Description, Units, Levels...}; {} when absent."""
        path = self.root / (table.removesuffix(".tsv") + ".json")
        if not path.is_file():
            return {}
        data = read_json_file(path, self.root, f"the data dictionary of {table}")
        return {k: v for k, v in data.items() if isinstance(v, dict)} \
            if isinstance(data, dict) else {}

    def sidecar_sources(self, file: BidsFile) -> dict[str, str]:
        """Sidecar key -> the BIDS-relative JSON file its value comes from (the most specific
        file of the inheritance chain that sets it)."""
        where: dict[str, str] = {}
        for path in self.inherited(file, ".json"):
            data = read_json_file(path, self.root, "")
            if isinstance(data, dict):
                rel = path.relative_to(self.root).as_posix()
                where.update(dict.fromkeys(data, rel))
        return where

    def companion(self, file: BidsFile, extension: str) -> Path | None:
        """The nearest file with ``extension`` (e.g. ``.bval``) that applies to ``file``."""
        found = self.inherited(file, extension)
        return found[-1] if found else None


def without_row_folders(path: str) -> str:
    """A path with its ``sub-*/`` and ``ses-*/`` folders removed (``tpl-*/`` and ``cohort-*/``
    in a template dataset): what schema globs match.

    ``sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz`` -> ``anat/sub-01_ses-1_T1w.nii.gz`` and
    ``derivatives/masks/sub-01/anat/x.nii.gz`` -> ``derivatives/masks/anat/x.nii.gz``.
    """
    parts = PurePosixPath(path).parts
    kept = [p for p in parts[:-1] if not (_SUBJECT_DIR.match(p) or _SESSION_DIR.match(p))]
    return "/".join([*kept, parts[-1]])


def folder_labels(path: str) -> tuple[str | None, str | None]:
    """The subject and session labels a path's folders name (the first of each):
    ``sub-01/ses-2/sub-01_ses-2_scans.tsv`` -> ``("01", "2")``."""
    sub: str | None = None
    ses: str | None = None
    for part in PurePosixPath(path).parts[:-1]:
        if sub is None and _SUBJECT_DIR.match(part):
            sub = part.split("-", 1)[1]
        elif ses is None and _SESSION_DIR.match(part):
            ses = part.split("-", 1)[1]
    return sub, ses


def index_bids(root: str | os.PathLike[str]) -> BidsIndex:
    """Index the BIDS dataset at ``root``, including every ``derivatives/<pipeline>``."""
    root_path = Path(os.path.abspath(root))  # absolute but not resolved: keep symlinks
    if not root_path.is_dir():
        raise BidsIndexError(
            f"BIDS root {shown(str(root))} does not exist or is not a folder. "
            "Pass the folder that holds dataset_description.json and the sub-* folders."
        )
    ignore = _BidsIgnore.load(root_path)
    files: list[BidsFile] = []
    pipelines: dict[str, dict[str, Any]] = {}
    ignored: list[str] = []
    unreadable: list[str] = []
    problems: list[str] = []
    for dataset_root in bids2table.find_bids_datasets(root_path):
        rel_root = Path(dataset_root).relative_to(root_path).as_posix()
        pipeline = _pipeline_name(rel_root)
        if rel_root != "." and pipeline is None:
            continue  # a BIDS-looking folder outside derivatives/ (e.g. sourcedata): not data
        if pipeline is not None:
            try:
                pipelines[pipeline] = _read_json(Path(dataset_root) / "dataset_description.json",
                                                 root_path)
            except BidsIndexError as err:  # a derivative's card line is lost, not its images
                problems.append(f"{err} Its images are still indexed as derivatives/{pipeline}.")
                pipelines[pipeline] = {}
        table = bids2table.index_dataset(dataset_root)
        prefix = "" if pipeline is None else f"derivatives/{pipeline}/"
        for rel_path, entities in _rows(table):
            path = prefix + rel_path
            if ignore.match(path):
                ignored.append(path)
                continue
            size, mtime, ctime = _stat(root_path / path)
            if size < 0:
                unreadable.append(path)
            files.append(BidsFile(path, pipeline, entities, size, mtime, ctime_ns=ctime))
    # Every image on disk, .bidsignore'd ones too: those are indexed as non-BIDS files that
    # only a glob column claims, and reported, so none vanishes silently.
    nifti = list(_walk_nifti(root_path))
    indexed = {f.path for f in files}
    for path in nifti:
        if path not in indexed and (loose := _loose_file(root_path, path)) is not None:
            if ignore.match(path):
                loose = replace(loose, bidsignored=True)
            elif loose.size < 0:  # e.g. annexed content not fetched: named by the readability
                unreadable.append(path)  # check before the build, as BIDS-named files are
            files.append(loose)
    ignored += [p for p in nifti if ignore.match(p) and p not in ignored]
    files.sort(key=BidsFile.sort_key)

    folders = [p for p in root_path.iterdir() if _SUBJECT_DIR.match(p.name) and p.is_dir()]
    entity = "sub" if any(p.name.startswith("sub-") for p in folders) or not folders else "tpl"
    subject_dirs = {p.name.split("-", 1)[1]: p for p in folders if p.name.startswith(entity)}
    subjects = sorted(subject_dirs, key=natural_key)
    sessions = {
        sub: sorted(
            (p.name.split("-", 1)[1] for p in subject_dirs[sub].iterdir()
             if p.name.startswith(SESSION_OF[entity] + "-") and _SESSION_DIR.match(p.name)
             and p.is_dir()),
            key=natural_key,
        )
        for sub in subjects
    }
    if not subjects and not files:
        raise BidsIndexError(
            f"No sub-* folders (nor tpl-* folders of a template dataset) under "
            f"{shown(str(root))}. Is this "
            "the BIDS root (the folder holding dataset_description.json)?"
        )
    return BidsIndex(
        root=root_path,
        files=files,
        description=_read_json(root_path / "dataset_description.json", root_path),
        pipelines=pipelines,
        subjects=subjects,
        sessions=sessions,
        nifti_on_disk=sorted(nifti, key=natural_key),
        ignored=sorted(ignored, key=natural_key),
        unreadable=sorted(unreadable, key=natural_key),
        subject_entity=entity,
        problems=problems,
    )


def _pipeline_name(rel_root: str) -> str | None:
    """``derivatives/fmriprep`` -> ``fmriprep``; raw root and non-derivative folders -> None."""
    if rel_root.startswith("derivatives/"):
        return rel_root[len("derivatives/"):]
    return None


def _rows(table: pa.Table) -> Iterator[tuple[str, dict[str, str | int]]]:
    """(relative path, entities) per row of a bids2table index, skipping null entities."""
    columns = [
        name for name in table.column_names
        if name not in NON_ENTITY_COLUMNS and table.column(name).null_count < len(table)
    ]
    values = {name: table.column(name).to_pylist() for name in columns}
    extras = table.column("extra_entities").to_pylist()
    for i, path in enumerate(table.column("path").to_pylist()):
        entities: dict[str, str | int] = {}
        for name in columns:
            value = values[name][i]
            if value is not None:
                entities[name] = value
        # Entities unknown to the BIDS schema (e.g. a custom "hemi-" misuse) are kept too,
        # so nothing that was in a filename is lost.
        for key, value in extras[i] or []:
            entities.setdefault(key, value)
        yield path, entities


def _loose_file(root: Path, rel_path: str) -> BidsFile | None:
    """A NIfTI under ``sub-*/`` with a non-BIDS name, its entities read from its folders.

    ``sub-01/ses-2/anat/T1.nii.gz`` -> sub=01, ses=2, datatype=anat, suffix=T1. Files outside
    any subject folder cannot belong to a row and stay unindexed (the coverage report lists them).
    """
    parts = rel_path.split("/")
    subject_at = next((i for i, p in enumerate(parts[:-1]) if _SUBJECT_DIR.match(p)), None)
    if subject_at is None:
        return None
    kind, label = parts[subject_at].split("-", 1)
    prefix = "/".join(parts[:subject_at])
    pipeline = _pipeline_name(prefix)
    if prefix and pipeline is None:
        return None  # e.g. sourcedata/: not a dataset of this tree
    entities: dict[str, str | int] = parse_name(parts[-1])
    entities[kind] = label
    rest = parts[subject_at + 1:-1]
    if rest and _SESSION_DIR.match(rest[0]) and rest[0].startswith(SESSION_OF[kind] + "-"):
        entities[SESSION_OF[kind]] = rest[0].split("-", 1)[1]
        rest = rest[1:]
    if rest and rest[0].isalpha() and rest[0].islower():
        entities["datatype"] = rest[0]
    size, mtime, ctime = _stat(root / rel_path)
    return BidsFile(rel_path, pipeline, entities, size, mtime, bids_named=False, ctime_ns=ctime)


def _stat(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()  # follows the symlink to the annexed content, if present
    except OSError:
        return -1, 0, 0
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _read_json(path: Path, root: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = read_json_file(path, root, "")
    return data if isinstance(data, dict) else {}


def read_json_file(path: Path, root: Path, context: str) -> Any:
    """A JSON file of the dataset, or a ``BidsIndexError`` naming it and what is wrong."""
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    try:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            problem = "it is empty"
        else:
            return json.loads(text)
    except RecursionError:
        problem = "it is nested too deeply to read (hundreds of levels or more)"
    except (UnicodeDecodeError, ValueError) as err:
        problem = f"it is not valid UTF-8 JSON ({err})"
    except OSError as err:
        problem = f"it cannot be read ({err.strerror})"
    where = f" ({shown(context)})" if context else ""
    raise BidsIndexError(f"Cannot read {shown(rel)}{where}: {problem}. Fix or remove the file.")


def _walk_nifti(root: Path) -> Iterator[str]:
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        for name in names:
            if name.endswith(NIFTI_EXTENSIONS):
                yield Path(folder, name).relative_to(root).as_posix()


def _inherited(
    listdir: Callable[[Path], tuple[str, ...]], root: Path, file: BidsFile, extension: str
) -> list[Path]:
    suffix = file.entities.get("suffix")
    if not suffix:
        return []
    # BIDS inheritance compares labels as written; bids2table turns run-01 into 1, so the
    # entities are re-read from the file name itself.
    query = _name_entities(PurePosixPath(file.path).name)
    found: list[Path] = []
    folder = PurePosixPath(file.path).parent
    stop = PurePosixPath(file.dataset_root or ".")
    while True:
        for name in listdir(root / folder):
            if not name.endswith(f"{suffix}{extension}") or name.startswith("."):
                continue
            candidate = _name_entities(name)
            if all(query.get(k) == v for k, v in candidate.items()):
                found.append(root / folder / name)
        if folder == stop or folder == PurePosixPath("."):
            break
        folder = folder.parent
    found.reverse()  # top-down: dataset root first, most specific last
    return found


def _name_entities(name: str) -> dict[str, str]:
    """Entities of a file name as written (``suffix`` included), for inheritance matching."""
    stem = name.split(".", 1)[0]
    parts = stem.split("_")
    entities = dict(part.split("-", 1) for part in parts if "-" in part)
    if parts and "-" not in parts[-1]:
        entities["suffix"] = parts[-1]
    return entities


@dataclass(frozen=True)
class _BidsIgnore:
    """``.bidsignore`` patterns, gitignore-like: ``/`` anchors at the root, ``dir/`` is a
    folder."""

    patterns: tuple[str, ...]

    @classmethod
    def load(cls, root: Path) -> _BidsIgnore:
        path = root / ".bidsignore"
        if not path.is_file():
            return cls(())
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls(tuple(s for line in lines if (s := line.strip()) and not s.startswith("#")))

    def match(self, rel_path: str) -> bool:
        if not self.patterns:
            return False
        parts = rel_path.split("/")
        for pattern in self.patterns:
            anchored = pattern.startswith("/")
            pat = pattern.strip("/")
            if anchored or "/" in pat:
                # Match the path or any of its parent folders against the full pattern.
                if any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
                    return True
            elif any(fnmatch.fnmatch(part, pat) for part in parts):
                return True
        return False
