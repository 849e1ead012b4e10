"""Metadata joined to rows: the declared table columns of each subject and session.

Per-subject tables (``participants.tsv``, ``phenotype/*.tsv``) give every row of a subject
its values; ``sessions.tsv`` (every ``sub-*/sub-*_sessions.tsv``) gives each session's row
its own. A table that cannot be used becomes a failed check rather than an exception, so
one run reports every problem; so do subjects (or sessions) listed in a table without a
folder, and folders without a line in the table (their values are null).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._index import BidsIndex
from ._results import ValidationCheck
from ._schema import Schema, SchemaError
from ._tables import SESSIONS_TABLE, TableError, TableRow, load_table
from ._util import natural_key, summarize_paths


@dataclass
class MetadataTables:
    """Every declared table's values, by subject and by (subject, session) labels."""

    by_subject: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_session: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def values(self, schema: Schema, sub: str, ses: str | None) -> dict[str, Any]:
        """The metadata cells of one row: every declared column, null where absent."""
        values: dict[str, Any] = dict.fromkeys(schema.metadata_columns())
        values.update(self.by_subject.get(sub, {}))
        if ses is not None:
            values.update(self.by_session.get((sub, ses), {}))
        return values


def load_metadata(index: BidsIndex, schema: Schema
                  ) -> tuple[MetadataTables, list[ValidationCheck]]:
    """Read every table ``schema`` declares; per table, a check of it against the folders
    (or a failed check when it cannot be read)."""
    tables = MetadataTables()
    checks: list[ValidationCheck] = []
    if schema.row == "subject" and SESSIONS_TABLE in schema.metadata:
        raise SchemaError("sessions.tsv holds per-session values; use row='session' or 'image'.")
    for table, columns in schema.metadata_spec().items():
        try:
            rows: list[TableRow] = load_table(index.root, table, columns)
        except TableError as err:
            checks.append(ValidationCheck(name=f"metadata {table}", expected="readable",
                                          actual="error", passed=False, details=str(err)))
            continue
        for r in rows:
            target = tables.by_subject.setdefault(r.subject, {}) if r.session is None \
                else tables.by_session.setdefault((r.subject, r.session), {})
            target.update(r.values)
        checks.append(_folder_agreement(index, table, rows))
    return tables, checks


def _folder_agreement(index: BidsIndex, table: str, rows: list[TableRow]) -> ValidationCheck:
    """Subjects (or sessions) listed in a table but without a folder, and the reverse."""
    if all(r.session is None for r in rows):
        listed = {r.subject for r in rows}
        folders = set(index.subjects)
        label = "subjects"
        no_folder = [f"sub-{s}" for s in sorted(listed - folders, key=natural_key)]
        no_row = [f"sub-{s}" for s in sorted(folders - listed, key=natural_key)]
    else:
        listed_s = {(r.subject, r.session or "") for r in rows}
        folders_s = {(s, ses) for s, sess in index.sessions.items() for ses in sess}
        label = "sessions"
        no_folder = [f"sub-{s}/ses-{e}" for s, e in sorted(listed_s - folders_s)]
        no_row = [f"sub-{s}/ses-{e}" for s, e in sorted(folders_s - listed_s)]
    details = []
    if no_folder:
        details.append(f"In {table} but no folder: {summarize_paths(no_folder)}")
    if no_row:
        details.append(f"Folder but no row in {table}: {summarize_paths(no_row)} "
                       "(their metadata will be null)")
    return ValidationCheck(
        name=f"{table} matches {label} folders", expected=0,
        actual=len(no_folder) + len(no_row), passed=not details,
        details="\n".join(details), severity="warning",
    )
