"""The notebook front door: ``BidsDataset`` (``from_bids``) and ``push_to_hub``, over the pipeline.

    from bids_hf import from_bids
    ds = from_bids("data/my-dataset",
                   schema={"t1w": "anat/*_T1w.nii.gz",
                           "lesion": "derivatives/masks/*_lesion.nii.gz"},
                   metadata_from="participants.tsv")   # a datasets.Dataset, images decoded lazily
    ds.push_to_hub("my-org/my-dataset")                 # checked, sharded, verified, private

``from_bids`` returns a ``BidsDataset``: an ordinary ``datasets.Dataset`` (indexing, ``map``,
``to_pandas``...) whose image cells point at the files, so nothing is read until an image
is decoded. Its ``push_to_hub`` is the pipeline push.py runs, not ``datasets``' own, which
would store basenames instead of BIDS paths, size the shards as if the images were not there
and check nothing (see upstream/ in the template repository). It publishes exactly the rows
``from_bids`` assembled, re-reading the tree, so every embedded byte is checked against its
source; a dataset changed since (``cast``, ``rename_column``...) is refused with an
explanation, since its rows no longer come from the tree. (``map`` and ``select`` return a
plain ``datasets.Dataset``, whose ``push_to_hub`` is ``datasets``' own.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets

from ._card import CardMeta
from ._errors import ChecksFailed, InputError
from ._hub import PublishResult
from ._infer import typed_columns
from ._pipeline import Options, collect, run
from ._results import ValidationResult
from ._rows import RowSet, row_ids
from ._schema import MetaColumn, Schema, as_schema


class BidsDataset(datasets.Dataset):  # type: ignore[misc]  # datasets: no type info
    """A ``datasets.Dataset`` assembled from a BIDS tree by a schema; ``push_to_hub``
    publishes it with bids_hf's checked, sharded, verified pipeline."""

    _bids_rowset: RowSet | None = None
    _bids_fingerprint: str | None = None

    @classmethod
    def from_bids(cls, root: str | os.PathLike[str], schema: Schema | Mapping[str, Any],
                  metadata_from: str | Mapping[str, Mapping[str, str | MetaColumn]] | None = None,
                  ) -> BidsDataset:
        """The BIDS tree at ``root`` as ``schema`` describes it.

        ``schema`` is a ``Schema`` or the short form ``{column: glob or one(...)/many(...)}``.
        ``metadata_from`` names a table (``"participants.tsv"``, types guessed from its
        values) or gives ``{table: {column: type}}``. Problems that would lose data (an
        ambiguous single-file column, an unreadable table...) raise ``ChecksFailed``.
        """
        spec = as_schema(schema)
        if metadata_from is not None:
            root_path = Path(root)
            tables = ({metadata_from: typed_columns(root_path / metadata_from,
                                                    skip={"participant_id", "session_id"})}
                      if isinstance(metadata_from, str) else dict(metadata_from))
            spec = replace(spec, metadata=tables)
        rowset = collect(root, spec)
        blocking = [c for c in rowset.checks if c.blocking]
        if blocking:
            raise ChecksFailed(f"The schema does not apply cleanly to {rowset.index.root}:",
                               ValidationResult(blocking))
        ds = cls.from_dict(_columns(rowset), features=rowset.features)
        assert isinstance(ds, BidsDataset)
        ds._bids_rowset, ds._bids_fingerprint = rowset, ds._fingerprint
        return ds

    def push_to_hub(self, repo_id: str, *, private: bool = True,
                    out: str | os.PathLike[str] | None = None, options: Options | None = None,
                    card: str | None = None, **settings: Any) -> PublishResult:
        """Check, shard, stage, verify and upload the rows ``from_bids`` assembled; then
        check the Hub copy. ``settings`` are fields of ``Options`` (``max_shard_size``,
        ``num_proc``, ``allow_phi``...), as are ``private`` and ``options`` itself.
        ``card`` is the dataset card's prose in Markdown (e.g. a README.md's text), kept as
        written; the generated blocks (summary, columns, usage...) go where its
        ``<!-- bids-hf:begin NAME --><!-- bids-hf:end NAME -->`` markers are, or after the
        prose when it has none. Without ``card``, a placeholder is published, with a warning.

        The staging folder (``out``, default ``~/.cache/bids_hf/staging/<org>--<name>``) is
        kept, so calling again resumes. Failed checks raise ``ChecksFailed``; upload
        failures raise ``HubError``; both name the files and what to do.
        """
        return push_to_hub(self, repo_id, private=private, out=out, options=options, card=card,
                           **settings)


def from_bids(root: str | os.PathLike[str], schema: Schema | Mapping[str, Any],
              metadata_from: str | Mapping[str, Mapping[str, str | MetaColumn]] | None = None,
              ) -> BidsDataset:
    """``BidsDataset.from_bids``: a ``datasets.Dataset`` of the tree, publishable safely."""
    return BidsDataset.from_bids(root, schema, metadata_from)


def push_to_hub(ds: datasets.Dataset, repo_id: str, *, private: bool = True,
                out: str | os.PathLike[str] | None = None, options: Options | None = None,
                card: str | None = None, **settings: Any) -> PublishResult:
    """Publish a dataset ``from_bids`` returned, with the pipeline push.py runs."""
    rowset = getattr(ds, "_bids_rowset", None)
    if rowset is None or getattr(ds, "_bids_fingerprint", None) != ds._fingerprint:
        raise InputError(
            "push_to_hub publishes datasets returned by from_bids() as they were returned; "
            "this one was changed or built elsewhere. Express the change in the schema "
            "(columns, splits, metadata) and call from_bids() again.")
    unknown = sorted(set(settings) - set(Options.__dataclass_fields__))
    if unknown:
        raise InputError(f"push_to_hub got {', '.join(unknown)}, which are not Options fields "
                         f"({', '.join(sorted(Options.__dataclass_fields__))}). Shards are "
                         "sized from the files (max_shard_size), not counted (num_shards).")
    options = replace(options or Options(), private=private, **settings)
    staging = Path(out) if out is not None else (
        Path.home() / ".cache" / "bids_hf" / "staging" / repo_id.replace("/", "--"))
    meta = CardMeta(slug=repo_id.split("/")[-1], repo_id=repo_id,
                    defaced="yes" if options.affirm_defaced else None)
    if not options.private and (meta.defaced or rowset.schema.privacy.defaced) is None:
        raise InputError("A public upload needs an attestation that anatomical images are "
                         "defaced, or that the dataset needs none: Privacy(defaced='yes' or "
                         "'not-needed') in the schema, or affirm_defaced=True.")
    _, published = run(rowset.index.root, rowset.schema, staging, meta, options,
                       repo_id=repo_id, card_source=card)
    assert published is not None and published.result is not None
    return published.result


def load_staged(out: str | os.PathLike[str], split: str = "train", **kwargs: Any
                ) -> datasets.Dataset:
    """``datasets.load_dataset`` of a staged folder, cached under the folder's manifest hash.

    datasets 5.2 caches a local folder whose card declares configs under the folder's name
    and a hash blind to its data files, so re-staging a folder (or staging another one of the
    same name) can load the earlier build (upstream/ in the template repository). Keyed by
    the manifest's sha256, a cache can only hold this very build.
    """
    from ._state import StatePaths

    manifest = StatePaths(Path(out)).manifest
    key = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    cache = Path(datasets.config.HF_DATASETS_CACHE) / "bids_hf-staged" / key
    return datasets.load_dataset(str(out), split=split, cache_dir=str(cache), **kwargs)


def _columns(rowset: RowSet) -> dict[str, list[Any]]:
    root = rowset.index.root
    columns: dict[str, list[Any]] = {name: [] for name in rowset.features}
    for row in rowset.rows:
        values = {**row_ids(row, rowset.schema.row), **row.values}
        for name in rowset.features:
            if name in rowset.image_columns:
                cells = [{"path": str(root / f.path), "bytes": None}
                         for f in row.images.get(name, [])]
                values[name] = cells if rowset.image_columns[name] else (
                    cells[0] if cells else None)
            columns[name].append(values.get(name))
    return columns

