"""The notebook front door: ``from_bids`` and ``push_to_hub``, over the engine push.py uses.

    from bids_hf import from_bids, push_to_hub
    ds = from_bids("data/my-dataset",
                   schema={"t1w": "anat/*_T1w.nii.gz",
                           "lesion": "derivatives/masks/*_lesion.nii.gz"},
                   metadata_from="participants.tsv")   # a datasets.Dataset, images decoded lazily
    push_to_hub(ds, "my-org/my-dataset")                # checked, sharded, verified, private

``from_bids`` returns an ordinary ``datasets.Dataset`` whose image cells point at the files
(nothing is read until an image is decoded). ``push_to_hub`` publishes exactly the rows
``from_bids`` assembled, re-reading the tree, so every embedded byte is checked against its
source: a dataset changed afterwards (``map``, ``filter``...) is refused with an
explanation, since its rows no longer come from the tree. ``Dataset.push_to_hub`` itself
would store basenames instead of BIDS paths and size the shards as if the images were
not there (see upstream/ in the template repository).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets

from ._card import CardMeta
from ._engine import ValidationError, check, publish_verified, stage_verified
from ._hub import PublishResult
from ._index import index_bids
from ._infer import typed_columns
from ._plan import DEFAULT_MAX_SHARD_SIZE, DEFAULT_ROW_GROUP_SIZE, plan_shards
from ._rows import RowSet, assemble_rows, row_ids
from ._schema import MetaColumn, Schema, as_schema
from ._validate import ValidationResult

# The rows behind each dataset from_bids returned, by the dataset's fingerprint.
_ASSEMBLED: dict[str, RowSet] = {}


def from_bids(root: str | os.PathLike[str], schema: Schema | Mapping[str, Any],
              metadata_from: str | Mapping[str, Mapping[str, str | MetaColumn]] | None = None,
              ) -> datasets.Dataset:
    """A ``datasets.Dataset`` of the BIDS tree at ``root`` as ``schema`` describes it.

    ``schema`` is a ``Schema`` or the short form ``{column: glob or one(...)/many(...)}``.
    ``metadata_from`` names a table (``"participants.tsv"``, types guessed from its values)
    or gives ``{table: {column: type}}``. Problems that would lose data (an ambiguous
    single-file column, an unreadable table...) raise ``ValidationError``.
    """
    spec = as_schema(schema)
    index = index_bids(root)
    if metadata_from is not None:
        tables = ({metadata_from: typed_columns(index.root / metadata_from,
                                                skip={"participant_id", "session_id"})}
                  if isinstance(metadata_from, str) else dict(metadata_from))
        spec = replace(spec, metadata=tables)
    rowset = assemble_rows(index, spec)
    blocking = [c for c in rowset.checks if c.blocking]
    if blocking:
        raise ValidationError(f"The schema does not apply cleanly to {index.root}:",
                              ValidationResult(blocking))
    columns: dict[str, list[Any]] = {name: [] for name in rowset.features}
    for row in rowset.rows:
        values = {**row_ids(row, spec.row), **row.values}
        for name in rowset.features:
            if name in rowset.image_columns:
                cells = [{"path": str(index.root / f.path), "bytes": None}
                         for f in row.images.get(name, [])]
                values[name] = cells if rowset.image_columns[name] else (cells[0] if cells else None)
            columns[name].append(values.get(name))
    ds = datasets.Dataset.from_dict(columns, features=rowset.features)
    _ASSEMBLED[ds._fingerprint] = rowset
    return ds


def push_to_hub(ds: datasets.Dataset, repo_id: str, *, private: bool = True,
                out: str | os.PathLike[str] | None = None,
                max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
                row_group_size: str | int = DEFAULT_ROW_GROUP_SIZE, num_proc: int = 1,
                allow_phi: bool = False, full_remote_check: bool = False,
                progress: bool = True) -> PublishResult:
    """Check, shard, stage, verify and upload what ``from_bids`` built; then check the Hub.

    The staging folder (``out``, default ``~/.cache/bids_hf/staging/<org>--<name>``) is kept,
    so calling again resumes. Failed checks raise ``ValidationError``; upload failures
    raise ``bids_hf.HubError``; both messages name the files and what to do.
    """
    rowset = _ASSEMBLED.get(ds._fingerprint)
    if rowset is None:
        raise ValueError(
            "push_to_hub publishes datasets returned by from_bids() as they were returned; "
            "this one was changed or built elsewhere. Express the change in the schema "
            "(columns, splits, metadata) and call from_bids() again.")
    checks = check(rowset, num_proc=num_proc, allow_phi=allow_phi)
    if not checks.all_passed:
        raise ValidationError("Checks failed; nothing was built.", checks)
    staging = Path(out) if out is not None else (
        Path.home() / ".cache" / "bids_hf" / "staging" / repo_id.replace("/", "--"))
    meta = CardMeta(slug=repo_id.split("/")[-1], repo_id=repo_id)
    plan = plan_shards(rowset, max_shard_size, row_group_size)
    staged = stage_verified(rowset, plan, staging, meta, num_proc=num_proc, progress=progress)
    if not staged.verification.all_passed:
        raise ValidationError(f"The staged folder {staging} failed verification; nothing "
                              "was uploaded.", staged.verification)
    result, remote = publish_verified(staging, repo_id, private=private, full=full_remote_check)
    if not remote.all_passed:
        raise ValidationError(f"The Hub copy of {repo_id} does not match {staging}.", remote)
    return result
