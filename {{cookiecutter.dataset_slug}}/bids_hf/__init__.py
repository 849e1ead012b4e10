"""bids_hf: publish a BIDS dataset on the Hugging Face Hub as Parquet with NIfTI embedded.

This package is vendored, identical, into every repo generated from the bids-hf template
(update it with ``cruft update``). Its modules, in the order the data flow through them
(each imports only modules listed above it)::

    _version         the version stamped into every manifest
    _util            natural order, sizes, hashes, how lists are cut
    _errors          one exception family, one exit code per category
    _results         check results: ValidationCheck, ValidationResult
    _entities        the BIDS entity vocabulary: spellings, order, integer entities
    _index           the tree: files and entities, derivatives, sidecars, .bidsignore
    _schema          schema.py's language: column <- BIDS query, metadata, splits, configs
    _tables          metadata tables (participants.tsv, sessions.tsv): n/a the only null
    _cells           a row's cells beside its images: kept entities, companions, sidecars
    _metadata        table values joined to rows; tables against the subject folders
    _splits          which split each row belongs to
    _coverage        what no column claims, columns that match nothing, unreadable files
    _features        the rows' datasets.Features
    _rows            the schema applied: one row per subject, session or image
    _phi             personal information in tables, sidecars, card text, image headers
    _plan            which rows go in which shard and row group, from file sizes
    _checks          the cheap checks, every one before anything is written
    _bids_validator  the official BIDS validator, when it is installed
    _state           the staging folder's own state (.bids_hf/): records, plan, lock
    _parallel        threads for GIL-free work, spawned processes past that
    _sources         each source image read once, and only as indexed
    _inspect         one image judged from its bytes: hash, integrity, header
    _arrow           a row group's images in one buffer, the table over it, the writer
    _commit          a written shard verified, made durable, recorded; reuse on rerun
    _shards          the one pass over the sources that writes every shard
    _slices          slices of an image in bounded memory
    _markdown        dataset text as inert Markdown
    _qc              the card's QC picture; which image columns hold masks
    _card            the dataset card: YAML that restores the features, and its body
    _stage           the staged folder: card, QC picture and manifest beside the shards
    _verify          the staged folder as a whole, before upload
    _http            every Hub request bounded in time, retried when transient
    _hub             upload what was verified, then check the Hub copy
    _review_sources  the review page's images: from the tree or the staged shards
    _review_page     the review page's rows, findings, thumbnails and viewer
    _review          the review page's local, read-only server (push.py --review)
    _pipeline        the steps above in order, with their Options: every door calls it
    _infer           propose a schema.py from a tree
    _builder         BidsBuilder: the datasets.GeneratorBasedBuilder of a dataset repo
    _api             from_bids and push_to_hub, for notebooks and scripts
    _cli             push.py's command line
    testing          test helpers: real NIfTI phantoms, synthetic trees, a replica of a schema
"""

import os

# Before pyarrow loads (this is the first thing importing bids_hf does, through push.py or
# a notebook): its allocator, mimalloc, would keep freed pages for a while, and a build's
# peak memory would grow with the number of shards. Where pyarrow was loaded first it is
# too late, and memory is bounded all the same, some 10-20 MB higher (measured).
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

from ._api import BidsDataset, from_bids, load_staged, push_to_hub
from ._builder import BidsBuilder
from ._errors import (
    BidsHfError,
    ChecksFailed,
    DiskFullError,
    HubError,
    InputError,
    ResourceError,
    SourceChangedError,
    StagingLockedError,
)
from ._index import BidsIndexError, index_bids
from ._infer import infer_schema
from ._pipeline import Options, Staged, check, check_images, collect, plan, publish, stage
from ._plan import PlanError
from ._results import ValidationCheck, ValidationResult
from ._schema import (
    Column,
    Expected,
    MetaColumn,
    Privacy,
    Schema,
    SchemaError,
    load_schema,
    many,
    meta,
    one,
)
from ._state import Manifest
from ._tables import TableError
from ._verify import verify_staged
from ._version import __version__

__all__ = [
    "BidsBuilder",
    "BidsDataset",
    "BidsHfError",
    "BidsIndexError",
    "ChecksFailed",
    "Column",
    "DiskFullError",
    "Expected",
    "HubError",
    "InputError",
    "Manifest",
    "MetaColumn",
    "Options",
    "PlanError",
    "Privacy",
    "ResourceError",
    "Schema",
    "SchemaError",
    "SourceChangedError",
    "Staged",
    "StagingLockedError",
    "TableError",
    "ValidationCheck",
    "ValidationResult",
    "__version__",
    "check",
    "check_images",
    "collect",
    "from_bids",
    "index_bids",
    "infer_schema",
    "load_schema",
    "load_staged",
    "many",
    "meta",
    "one",
    "plan",
    "publish",
    "push_to_hub",
    "stage",
    "verify_staged",
]
