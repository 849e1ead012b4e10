"""bids_hf: publish a BIDS dataset on the Hugging Face Hub as Parquet with NIfTI embedded.

This package is vendored, identical, into every repo generated from the bids-hf template
(update it with ``cruft update``). The data flow is visible in the module names::

    _index -> _rows -> _checks -> _plan -> _shards -> _stage -> _verify -> _hub
    (+ _schema, the language of schema.py; _infer, which proposes one; _tables; _phi;
     _qc and _card for the staged card; _engine, shared by _cli (push.py) and _api
     (from_bids / push_to_hub); _builder, the datasets.GeneratorBasedBuilder)
"""

from ._api import from_bids, push_to_hub
from ._builder import BidsBuilder
from ._checks import check_nifti, pre_build_checks
from ._engine import ValidationError
from ._hub import HubError, PublishResult
from ._index import BidsFile, BidsIndex, BidsIndexError, index_bids
from ._infer import infer_schema
from ._plan import PlanError, ShardPlan, plan_shards
from ._rows import Row, RowSet, assemble_rows
from ._schema import Column, Expected, MetaColumn, Schema, SchemaError, many, meta, one
from ._stage import Manifest, StagingError, stage
from ._synthetic import write_nifti, write_replica
from ._tables import TableError
from ._validate import ValidationCheck, ValidationResult
from ._verify import verify_staged
from ._version import __version__

__all__ = [
    "BidsBuilder",
    "BidsFile",
    "BidsIndex",
    "BidsIndexError",
    "Column",
    "Expected",
    "HubError",
    "Manifest",
    "MetaColumn",
    "PlanError",
    "PublishResult",
    "Row",
    "RowSet",
    "Schema",
    "SchemaError",
    "ShardPlan",
    "StagingError",
    "TableError",
    "ValidationCheck",
    "ValidationError",
    "ValidationResult",
    "__version__",
    "assemble_rows",
    "check_nifti",
    "from_bids",
    "index_bids",
    "infer_schema",
    "many",
    "meta",
    "one",
    "plan_shards",
    "pre_build_checks",
    "push_to_hub",
    "stage",
    "verify_staged",
    "write_nifti",
    "write_replica",
]
