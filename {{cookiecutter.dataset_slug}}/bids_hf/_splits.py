"""Splits: which split each row belongs to (``Schema.splits``), and the order they are listed in.

* ``None``: every row is ``train``;
* a metadata column: its value in each row names the row's split;
* ``{split: [participant_id, ...]}``: every row of a subject goes to the split listing it
  (a subject listed twice is an error in the schema).

A row left without a valid split is reported (one check names them all) and stays in
``train``. Split names are what ``datasets`` accepts: letters, digits and ``_``, dot-joined.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._results import ValidationCheck
from ._schema import Schema, SchemaError
from ._util import first_lines

DEFAULT_SPLIT = "train"
_LISTED_FIRST = ("train", "validation", "test")
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # what datasets accepts as a split name

RowIds = tuple[str, str, Mapping[str, Any]]  # a row's key, subject label and values


def ordered(names: Iterable[str]) -> list[str]:
    """Split names as they are listed: train, validation, test, then the others by name."""
    order = _LISTED_FIRST
    return sorted(set(names), key=lambda s: (order.index(s) if s in order else len(order), s))


def assign_splits(schema: Schema, rows: Sequence[RowIds]
                  ) -> tuple[list[str], list[ValidationCheck]]:
    """The split of each row, in order, and the check that every row has one (none when the
    schema declares no splits)."""
    splits = [DEFAULT_SPLIT] * len(rows)
    if schema.splits is None:
        return splits, []
    problems: list[str] = []
    if isinstance(schema.splits, str):
        column = schema.splits
        if column not in schema.metadata_columns():
            raise SchemaError(f"splits={column!r} must name a declared metadata column.")
        for i, (key, _, values) in enumerate(rows):
            value = values.get(column)
            if value is None or not _SPLIT_NAME.match(str(value)):
                problems.append(f"{key}: {column}={value!r} is not a split name")
            else:
                splits[i] = str(value)
    else:
        assignment: dict[str, str] = {}
        for split, subjects in schema.splits.items():
            if not _SPLIT_NAME.match(split):
                raise SchemaError(f"Split name {split!r} must be letters, digits and _ only.")
            for s in subjects:
                label = s.removeprefix("sub-")
                if label in assignment:
                    raise SchemaError(f"sub-{label} is listed in splits {assignment[label]!r} "
                                      f"and {split!r}.")
                assignment[label] = split
        for i, (_, subject, _) in enumerate(rows):
            if subject in assignment:
                splits[i] = assignment[subject]
            else:
                problems.append(f"sub-{subject} is in no split")
    return splits, [ValidationCheck(
        name="every row has a split", expected=0, actual=len(problems), passed=not problems,
        details=first_lines(problems, 20),
    )]
