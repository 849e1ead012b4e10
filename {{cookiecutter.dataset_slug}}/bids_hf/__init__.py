"""bids_hf: publish a BIDS dataset on the Hugging Face Hub as Parquet with NIfTI embedded.

This package is vendored, identical, into every repo generated from the bids-hf template
(update it with ``cruft update``). The data flow reads from the module names::

    _index     the BIDS tree: files and entities, derivatives, tables (_tables), sidecars
    _rows      schema.py (_schema) applied: one row per subject, session or image
    _checks    cheap checks before anything is written; privacy (_phi); BIDS validator
    _plan      which rows go in which shard and row group, from file sizes
    _shards    one pass over the sources: read, inspect (_inspect), embed, read back
    _stage     the card (_card), the QC picture (_qc) and the manifest
    _verify    the staged folder as a whole, before upload
    _hub       upload what was verified, then check the Hub copy
    _pipeline  the steps above in order; push.py (_cli) and from_bids (_api) both call it
    _state     the staging folder's own state (.bids_hf/): records, plan, manifest, lock
    _errors    one exception family, one exit code per category
    _review    look at every row before publishing (push.py --review)
    _infer     propose a schema.py;  _builder: the datasets.GeneratorBasedBuilder

Test helpers (synthetic trees, real NIfTI phantoms) are in ``bids_hf.testing``.
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
