"""The rows' ``datasets.Features``, from the schema: the columns a loaded dataset has.

In order: ``subject_id`` (and ``session_id`` unless rows are subjects); each image column as
``Nifti()`` or ``List(Nifti())`` followed by what is aligned with it (kept entities,
companions, sidecar); then the metadata columns with their declared types. Rows of single
images (``row="image"``) have one ``nifti`` column, with the claiming column and pipeline,
and every entity present, beside it.
"""

from __future__ import annotations

from typing import Any

import datasets
from datasets import List, Nifti, Value

from ._cells import Kept, image_row_companions
from ._entities import index_entities
from ._schema import IMAGE_COLUMN, CompanionKind, Schema


def features(schema: Schema, keep: Kept) -> datasets.Features:
    """The features of rows assembled by ``schema``, ``keep`` being each image column's kept
    entities."""
    columns = schema.image_columns
    feats: dict[str, Any] = {"subject_id": Value("string")}
    if schema.row != "subject":
        feats["session_id"] = Value("string")
    if schema.row == "image":
        feats["column"] = Value("string")
        feats["pipeline"] = Value("string")
        for ent in keep[IMAGE_COLUMN]:
            feats[ent] = _entity_feature(ent)
        feats[IMAGE_COLUMN] = Nifti()
        for ext, kind in image_row_companions(schema):
            feats[ext] = _companion_feature(kind)
        if any(c.sidecar for c in columns.values()):
            feats["sidecar"] = Value("string")
    else:
        for name, col in columns.items():
            feats[name] = List(Nifti()) if col.many else Nifti()
            for ent in keep[name]:
                feats[f"{name}_{ent}"] = List(_entity_feature(ent))
            for ext, kind in col.companions:
                feat = _companion_feature(kind)
                feats[f"{name}_{ext}"] = List(feat) if col.many else feat
            if col.sidecar:
                feats[f"{name}_sidecar"] = List(Value("string")) if col.many else Value("string")
    for name, dtype in schema.metadata_columns().items():
        feats[name] = Value(dtype)
    return datasets.Features(feats)


def _entity_feature(name: str) -> Value:
    return Value("int32") if name in index_entities() else Value("string")


def _companion_feature(kind: CompanionKind) -> Any:
    if kind == "text":
        return Value("string")
    return List(Value("float32")) if kind == "vector" else List(List(Value("float32")))
