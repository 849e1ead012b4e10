"""The BIDS entity vocabulary, read once from bids2table's schema (so new BIDS versions bring
their entities with them): spellings, order, and which entities hold integers."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import bids2table

# Index columns of bids2table that are bookkeeping, not entities.
NON_ENTITY_COLUMNS = frozenset({"dataset", "root", "path", "extra_entities"})


@cache
def entity_names() -> dict[str, str]:
    """Every accepted entity spelling (``run``, ``acquisition``, ``acq``...) -> bids2table's
    short column name."""
    names: dict[str, str] = {"extension": "ext", "datatype": "datatype", "suffix": "suffix"}
    for f in bids2table.get_arrow_schema():
        long_name = (f.metadata or {}).get(b"entity")
        if long_name is None:
            continue
        names[f.name] = f.name
        names[long_name.decode()] = f.name
    names["extension"] = "ext"
    return names


@cache
def index_entities() -> frozenset[str]:
    """Short names of entities whose values are integers (run, echo, flip, ...)."""
    return frozenset(f.name for f in bids2table.get_arrow_schema()
                     if (f.metadata or {}).get(b"format") == b"index")


@cache
def entity_order() -> tuple[str, ...]:
    """Entity columns in BIDS order (sub, ses, ..., datatype, suffix, ext)."""
    return tuple(f.name for f in bids2table.get_arrow_schema()
                 if f.name not in NON_ENTITY_COLUMNS)


def parse_name(name: str) -> dict[str, str | int]:
    """Entities of a file name, typed as bids2table types indexed files: ``run-01`` -> 1."""
    return typed(bids2table.parse_bids_entities(name))


def typed(entities: Mapping[str, str | int]) -> dict[str, str | int]:
    ints = index_entities()
    out: dict[str, str | int] = {}
    for key, value in entities.items():
        if key in ints and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    return out
