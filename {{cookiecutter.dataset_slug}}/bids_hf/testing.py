"""Helpers for tests: synthetic BIDS data with real NIfTI phantoms (nibabel), a small replica
tree of any schema, and an image checker.

    from bids_hf.testing import write_replica, write_nifti, check_nifti

The generated repo's structure tests build a replica from its own ``schema.py`` and push it
through the whole pipeline, so a schema is exercised end to end before the real data are
touched. Images are brain-like (an ellipsoid with grey/white contrast and noise; masks are a
blob), deterministic per seed, and gzip output is deterministic too (nibabel writes mtime 0).
"""

from __future__ import annotations

import fnmatch
import json
import zlib
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ._index import without_row_folders
from ._inspect import check_nifti
from ._qc import MASK_SUFFIXES
from ._schema import ANY_PIPELINE, Column, Schema
from ._tables import SESSIONS_TABLE

__all__ = ["check_nifti", "phantom", "write_dwi_companions", "write_json", "write_nifti",
           "write_replica", "write_tsv"]


def seed_of(text: str) -> int:
    return zlib.crc32(text.encode())


def phantom(shape: tuple[int, ...], seed: int, kind: str = "brain") -> np.ndarray:
    """A brain-like volume (3-D or 4-D), or a lesion-like binary blob for ``kind="mask"``."""
    rng = np.random.default_rng(seed)
    x, y, z = shape[:3]
    gx, gy, gz = np.meshgrid(*(np.linspace(-1, 1, n) for n in (x, y, z)), indexing="ij")
    if kind == "mask":
        c = rng.uniform(-0.3, 0.3, size=3)
        r = rng.uniform(0.15, 0.3)
        blob: np.ndarray = ((gx - c[0]) ** 2 + (gy - c[1]) ** 2 + (gz - c[2]) ** 2) < r**2
        return blob.astype(np.uint8)
    head = (gx / 0.85) ** 2 + (gy / 0.95) ** 2 + (gz / 0.8) ** 2
    vol: np.ndarray = np.where(head < 1, 600.0, 0.0) + np.where(head < 0.55, 300.0, 0.0)
    vol[(np.abs(gx) < 0.06) & (head < 0.9)] = 150.0  # a midline "fissure"
    vol += rng.normal(0, 25, size=(x, y, z))
    if len(shape) == 4:
        drift = rng.normal(0, 10, size=shape[3])
        vol = vol[..., None] + drift[None, None, None, :]
    clipped: np.ndarray = np.clip(vol, 0, None)
    return clipped.astype(np.int16)


def write_nifti(path: Path, shape: tuple[int, ...] = (16, 16, 12), seed: int | None = None,
                kind: str = "brain", descrip: str = "", tr: float | None = None) -> Path:
    """Write a real NIfTI-1 image (gzip when the name ends in ``.gz``); ``tr`` sets the
    repetition time of a 4-D image (the BIDS validator compares it with the sidecar)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = phantom(shape, seed_of(path.name) if seed is None else seed, kind)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-shape[0], -shape[1], -shape[2]]
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None and len(shape) == 4:
        img.header.set_zooms((2.0, 2.0, 2.0, tr))
    if descrip:
        img.header["descrip"] = descrip.encode()[:79]
    nib.save(img, path)
    return path


def write_tsv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else []
    lines = ["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def write_dwi_companions(image: Path, volumes: int) -> None:
    """``.bval`` (one line) and ``.bvec`` (three lines) for a DWI image with ``volumes`` volumes."""
    stem = _stem(image)
    bvals = [0] + [1000] * (volumes - 1)
    Path(stem + ".bval").write_text(" ".join(map(str, bvals)) + "\n", encoding="utf-8")
    rng = np.random.default_rng(seed_of(stem))
    vecs = rng.normal(size=(3, volumes))
    vecs /= np.linalg.norm(vecs, axis=0)
    vecs[:, 0] = 0
    Path(stem + ".bvec").write_text(
        "\n".join(" ".join(f"{v:.6f}" for v in row) for row in vecs) + "\n", encoding="utf-8")


@cache
def datatype_of_suffix() -> dict[str, str]:
    """suffix -> its first datatype in the BIDS schema (T1w -> anat, bold -> func, ...)."""
    import bidsschematools.schema

    schema = bidsschematools.schema.load_schema()
    found: dict[str, str] = {}
    for group in schema.rules.files.raw.values():
        for rule in group.values():
            for suffix in rule.get("suffixes", []):
                datatypes = rule.get("datatypes") or []
                if datatypes:
                    found.setdefault(suffix, datatypes[0])
    return found


def write_replica(schema: Schema, root: Path, subjects: int = 2, sessions: int = 2,
                  shape: tuple[int, ...] = (12, 12, 8)) -> Path:
    """A small tree that every column of ``schema`` matches (two runs for ``many`` columns),
    with the declared metadata tables. Rows: ``subjects`` x ``sessions`` (or x 1 for
    ``row="subject"``)."""
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "dataset_description.json",
               {"Name": "Synthetic replica", "BIDSVersion": "1.10.0", "License": "CC0"})
    session_labels: list[str | None] = (
        [None] if schema.row == "subject" else [str(j + 1) for j in range(sessions)])
    labels = [(f"{i + 1:02d}", session_labels) for i in range(subjects)]
    pipelines: set[str] = set()
    for sub, sess in labels:
        for ses in sess:
            for name, col in schema.image_columns.items():
                for path in _replica_paths(name, col, sub, ses):
                    full = root / path
                    suffix = full.name.split(".")[0].rsplit("_", 1)[-1]
                    kind = "mask" if suffix in MASK_SUFFIXES else "brain"
                    img_shape = (*shape, 3) if suffix in {"bold", "dwi"} else shape
                    write_nifti(full, img_shape, kind=kind)
                    if path.startswith("derivatives/"):
                        pipelines.add(path.split("/")[1])
                    for ext, _ in col.companions:
                        if ext in ("bval", "bvec"):
                            write_dwi_companions(full, img_shape[3] if len(img_shape) == 4 else 1)
                        else:
                            Path(f"{_stem(full)}.{ext}").write_text("synthetic\n",
                                                                    encoding="utf-8")
                    if col.sidecar:
                        write_json(Path(_stem(full) + ".json"), {"RepetitionTime": 2.0})
    for p in sorted(pipelines):
        write_json(root / "derivatives" / p / "dataset_description.json",
                   {"Name": p, "BIDSVersion": "1.10.0", "DatasetType": "derivative",
                    "GeneratedBy": [{"Name": p}]})
    for table, columns in schema.metadata_spec().items():
        _write_table(root, table, {col: spec.dtype for col, spec in columns.items()}, labels)
    return root


def _write_table(root: Path, table: str, columns: Mapping[str, str],
                 labels: list[tuple[str, list[str | None]]]) -> None:
    def value(dtype: str, i: int) -> str:
        return {"string": f"value{i}", "float32": f"{40 + i}.5", "float64": f"{40 + i}.5",
                "int32": str(40 + i), "int64": str(40 + i), "bool": "true"}[dtype]

    if table == SESSIONS_TABLE:
        for sub, sess in labels:
            rows = [{"session_id": f"ses-{ses}", **{c: value(t, i) for c, t in columns.items()}}
                    for i, ses in enumerate(sess) if ses]
            if rows:
                write_tsv(root / f"sub-{sub}" / f"sub-{sub}_sessions.tsv", rows)
        return
    rows = [{"participant_id": f"sub-{sub}", **{c: value(t, i) for c, t in columns.items()}}
            for i, (sub, _) in enumerate(labels)]
    write_tsv(root / table, rows)


def _replica_paths(name: str, col: Column, sub: str, ses: str | None) -> list[str]:
    """Paths (relative to the root) of files this column will match for one row."""
    prefix = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    folder = f"sub-{sub}" + (f"/ses-{ses}" if ses else "")
    runs = [1, 2] if col.many else [None]
    q = col.query
    if q.glob is not None:
        return [_from_glob(q.glob, folder, prefix, run) for run in runs]
    ents = {k: v for k, v in q.entities}
    suffix = _first(ents.pop("suffix", None)) or name
    ext = _first(ents.pop("ext", None)) or ".nii.gz"
    datatype = _first(ents.pop("datatype", None)) or datatype_of_suffix().get(str(suffix), "anat")
    ents.pop("ses", None)
    base = "" if q.pipeline in (None, ANY_PIPELINE) else f"derivatives/{q.pipeline}/"
    out = []
    for run in runs:
        parts = [prefix]
        for key, val in ents.items():
            if val is not None:
                parts.append(f"{key}-{_first(val)}")
        if run is not None and "run" not in ents:
            parts.append(f"run-{run}")
        out.append(f"{base}{folder}/{datatype}/{'_'.join(parts)}_{suffix}{ext}")
    return out


def _from_glob(glob: str, folder: str, prefix: str, run: int | None) -> str:
    """Turn ``anat/*_T1w.nii.gz`` into ``sub-01/ses-1/anat/sub-01_ses-1[_run-N]_T1w.nii.gz``."""
    head, _, name = glob.rpartition("/")
    fill = prefix + (f"_run-{run}" if run is not None else "")
    concrete = name.replace("*", fill, 1).replace("*", "").replace("?", "x")
    if head.startswith("derivatives/"):
        parts = head.split("/")
        head = "/".join([*parts[:2], folder, *parts[2:]])
    else:
        head = "/".join(p for p in (folder, head) if p)
    path = f"{head}/{concrete}"
    if not fnmatch.fnmatchcase(without_row_folders(path), glob):  # as Query.matches does
        raise ValueError(f"Cannot make a file for glob {glob!r}; use an entity query for this "
                         "column or write the replica by hand.")
    return path


def _stem(image: Path) -> str:
    """A NIfTI image's path without ``.nii``/``.nii.gz``: its companions and sidecar share it."""
    return str(image).removesuffix(".gz").removesuffix(".nii")


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value
