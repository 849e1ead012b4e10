"""Privacy: fields that look like personal information, judged by what will leave the machine.

What is scanned, and whether it is published:

* the metadata tables schema.py declares (``participants.tsv``, ``sessions.tsv``,
  ``phenotype/*.tsv``...): declared columns are published; their names (name, birth date,
  address, phone, MRN...) and values (e-mail addresses, phone or social-security numbers,
  DICOM-style names ``DOE^JANE``, exact calendar dates: BIDS shifts dates to the 1800s) are
  checked. Columns no one declared, and ``scans.tsv`` tables, stay on this machine: a finding
  there is a note;
* JSON sidecars: the text of ``<column>_sidecar`` cells is published, after the keys
  ``Privacy(drop=...)`` removes; keys that carry identity, dates or times (``PatientName``,
  ``PatientID``, ``PatientBirthDate``, ``AcquisitionDateTime``, ``AcquisitionTime``...)
  block, keys that name the site (``InstitutionName``, ``InstitutionAddress``,
  ``StationName``, ``DeviceSerialNumber``...) are a warning. Sidecars no column publishes are
  a note;
* the header of every claimed image (scanned while the image is read for its shard, see
  ``_inspect``): ``descrip``, ``aux_file``, ``db_name``, ``intent_name`` and the header
  extensions (a DICOM or JSON extension can carry a whole DICOM header);
* what the card copies from ``dataset_description.json`` and ``participants.json``: value
  patterns only (authors' names are meant to be published), as warnings.

``Privacy(allow={field: reason})`` turns a field's findings into reviewed ones, listed in the
card. ``--allow-phi`` makes every blocking finding a warning (a last resort: prefer decisions
per field, which the next maintainer can read).

What it cannot catch: faces in the images themselves (deface anatomical scans, e.g. with
pydeface or mri_deface, look at them with ``push.py --review``, and attest it with
``Privacy(defaced=...)``), burned-in text, identifiers in free text that match no pattern, or
re-identification from the combination of innocuous values. A clean report is a screen,
not a guarantee.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._results import ValidationCheck
from ._tables import SESSIONS_TABLE, read_tsv, sessions_tables
from ._util import shown, summarize_paths

# Sidecar keys: identity, dates and times (blocking) vs the site (a warning).
IDENTITY_KEYS = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthName", "PatientAddress",
    "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames", "PatientMotherBirthName",
    "MedicalRecordLocator", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "AccessionNumber", "StudyID", "StudyInstanceUID", "SeriesInstanceUID",
    "AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime", "StudyDate", "StudyTime",
    "SeriesDate", "SeriesTime", "ContentDate", "ContentTime", "PatientBirthTime",
}
SITE_KEYS = {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
             "StationName", "DeviceSerialNumber"}
_NAME_COLUMNS = re.compile(
    r"(^|_)(first_?name|last_?name|full_?name|sur_?name|given_?name|patient_?name|name|"
    r"initials|dob|birth_?date|date_?of_?birth|birthday|address|street|zip_?code|postcode|"
    r"phone|telephone|e_?mail|ssn|social_?security|mrn|medical_?record|nhs_?number|"
    r"insurance)($|_)", re.IGNORECASE)
_VALUE_PATTERNS = {
    "an e-mail address": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
    "a phone number": re.compile(r"(?<!\d)(\+?\d{1,2}[ .-])?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"),
    "a social-security number": re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"),
    "a DICOM-style person name": re.compile(r"\b[A-Za-z][A-Za-z'-]+\^[A-Za-z][A-Za-z'-]*"),
}
# Values that say the field was de-identified already.
_REDACTED = re.compile(r"^\s*(redacted|anonymi[sz]ed|de-?identified|removed|withheld|n/a|none|"
                       r"unknown|x+|\*+)?\s*$", re.IGNORECASE)
# A calendar date with a real year (BIDS de-identification shifts years to the 1800s).
_DATE = re.compile(r"(?<!\d)(19[2-9]\d|20\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])|"
                   r"(?<!\d)(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])/(19[2-9]\d|20\d\d)(?!\d)")
# Two or more capitalised words, as in "Jane Doe", except vocabulary of scanners and tools.
_CAPITALISED_RUN = re.compile(r"\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)+)\b")
_NOT_NAMES = {
    "Siemens", "Philips", "General", "Electric", "Healthcare", "Medical", "Systems", "Canon",
    "Toshiba", "Prisma", "Skyra", "Trio", "Verio", "Vida", "Avanto", "Aera", "Espree",
    "Ingenia", "Achieva", "Signa", "Discovery", "Premier", "Architect", "Elition", "Magnetom",
    "Tim", "Fit", "Fsl", "Spm", "Afni", "Freesurfer", "Mrtrix", "Ants", "Nipype", "Fmriprep",
    "Brain", "Mask", "Lesion", "Segmentation", "Template", "Space", "Image", "Scan",
    "Synthetic", "Phantom", "Sequence", "Flair", "Diffusion", "Weighted",
}
DICOM_IDENTITY_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientAddress",
                       "ReferringPhysicianName")
_HEADER_TEXT = {"descrip": (148, 80), "aux_file": (228, 24), "db_name": (14, 18),
                "intent_name": (328, 16)}
# Fields of dataset_description.json that the card shows.
CARD_FIELDS = ("Name", "Authors", "Acknowledgements", "HowToAcknowledge", "Funding",
               "EthicsApprovals", "ReferencesAndLinks", "DatasetDOI")


@dataclass(frozen=True)
class Finding:
    """One field in one file that looks like personal information."""

    path: str  # BIDS-relative
    where: str  # "key 'PatientName'", "column 'dob'", "header descrip"
    what: str
    blocking: bool = True  # identity or dates; False: the site, or card text (a warning)
    field: str = ""  # the bare name Privacy(allow=...) refers to
    published: bool = True  # False: the file stays on this machine (a note)

    def __str__(self) -> str:
        return f"{shown(self.path)}: {self.where}: {self.what}"


def scan_text(text: str) -> list[str]:
    """What in a free-text value looks personal (value patterns and exact dates)."""
    found = [label for label, pattern in _VALUE_PATTERNS.items() if pattern.search(text)]
    if _DATE.search(text):
        found.append("an exact calendar date")
    return found


def _looks_like_name(text: str) -> str | None:
    for match in _CAPITALISED_RUN.finditer(text):
        words = match.group(1).split()
        if not all(w.capitalize() in _NOT_NAMES for w in words):
            return match.group(1)
    return None


# -- tables ------------------------------------------------------------------------------------


def people_tables(root: Path) -> list[Path]:
    """The tables about people: participants, phenotype, sessions and scans tables (not
    lookup tables such as ``*_dseg.tsv``)."""
    return sorted({*root.glob("participants.tsv"), *root.glob("phenotype/*.tsv"),
                   *sessions_tables(root), *root.glob("sub-*/sub-*_scans.tsv"),
                   *root.glob("sub-*/ses-*/sub-*_scans.tsv")})


def scan_tables(root: Path, published: Mapping[str, set[str]]) -> list[Finding]:
    """``published``: table (as schema.py names it) -> the columns it publishes."""
    findings: list[Finding] = []
    for path in people_tables(root):
        rel = path.relative_to(root).as_posix()
        declared = published.get(table_name(rel), set())
        try:
            frame = read_tsv(path)
        except ValueError:
            continue  # unreadable tables are reported by the metadata checks
        for column in frame.columns:
            shown = column in declared
            if _NAME_COLUMNS.search(column):
                findings.append(Finding(rel, f"column {column!r}",
                                        "its name suggests identity or contact data",
                                        field=column, published=shown))
            for value in frame[column].tolist():
                hits = scan_text(str(value))
                if hits:
                    findings.append(Finding(rel, f"column {column!r}",
                                            f"value {str(value)[:40]!r} looks like {hits[0]}",
                                            field=column, published=shown))
                    break  # one finding per column is enough to act on
    return findings


def table_name(rel: str) -> str:
    """How schema.py names a table: every ``sub-*/sub-*_sessions.tsv`` is ``sessions.tsv``."""
    return SESSIONS_TABLE if rel.endswith("_sessions.tsv") else rel


# -- sidecars ----------------------------------------------------------------------------------


def scan_sidecar(rel: str, data: Mapping[str, Any], *, published: bool,
                 keys: set[str] | None = None) -> Iterator[Finding]:
    """Findings for the keys of one JSON document (``keys``: only these)."""
    for key, value in data.items():
        if keys is not None and key not in keys:
            continue
        if isinstance(value, str) and _REDACTED.match(value):
            continue
        if key in IDENTITY_KEYS:
            yield Finding(rel, f"key {key!r}", "identity, date or time field of the DICOM "
                          "header", field=key, published=published)
        elif key in SITE_KEYS:
            yield Finding(rel, f"key {key!r}", f"names the site ({str(value)[:30]!r})",
                          blocking=False, field=key, published=published)
        elif isinstance(value, str) and (hits := scan_text(value)):
            yield Finding(rel, f"key {key!r}", f"value looks like {hits[0]}", field=key,
                          published=published)


def scan_unpublished_sidecars(root: Path, published: set[str]) -> list[Finding]:
    """Every other JSON sidecar under the root: what stays on this machine (notes)."""
    findings: list[Finding] = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        if rel in published or rel.startswith((".", "code/")) or "/." in rel \
                or rel.endswith("dataset_description.json"):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue  # what is published was read (and errors reported) by row assembly
        if isinstance(data, dict):
            findings += scan_sidecar(rel, data, published=False)
    return findings


# -- card sources and headers ------------------------------------------------------------------


def scan_card_sources(root: Path, description: Mapping[str, Any],
                      column_docs: Mapping[str, Any]) -> list[Finding]:
    """Value patterns in what the card copies (warnings: a card is meant to name people)."""
    findings: list[Finding] = []
    for key in CARD_FIELDS:
        if key in description and (hits := scan_text(json.dumps(description[key]))):
            findings.append(Finding("dataset_description.json", f"key {key!r}",
                                    f"the card will show {hits[0]}", blocking=False, field=key))
    for column, doc in column_docs.items():
        if hits := scan_text(json.dumps(doc)):
            findings.append(Finding("participants.json", f"column {column!r}",
                                    f"the card will show {hits[0]}", blocking=False,
                                    field=column))
    return findings


def scan_nifti_header(rel: str, head: bytes) -> list[Finding]:
    """Text fields and extensions of a NIfTI-1 header (``head``: the first bytes of the
    decompressed file, up to the image data)."""
    findings: list[Finding] = []
    for name, (offset, size) in _HEADER_TEXT.items():
        text = head[offset:offset + size].split(b"\0", 1)[0].decode("latin-1").strip()
        if not text:
            continue
        hits = scan_text(text)
        person = _looks_like_name(text)
        if hits:
            findings.append(Finding(rel, f"header {name}", f"{text[:40]!r} looks like {hits[0]}",
                                    field=name))
        elif person:
            findings.append(Finding(rel, f"header {name}", f"{text[:40]!r} contains what "
                                    f"reads like a name ({person!r})", field=name))
    if len(head) > 352 and head[348] == 1:  # extensions present
        extension = head[352:].decode("latin-1")
        tags = [t for t in DICOM_IDENTITY_TAGS if t in extension]
        if tags:
            findings.append(Finding(rel, "header extension", f"carries DICOM fields {tags}",
                                    field="extension"))
        elif hits := scan_text(extension):
            findings.append(Finding(rel, "header extension", f"contains {hits[0]}",
                                    field="extension"))
    return findings


# -- decisions ------------------------------------------------------------------------------------


def blocking_findings(findings: list[Finding], allow: Mapping[str, str],
                      allow_phi: bool = False) -> list[Finding]:
    """What may not be published as decided: published, blocking, not allowed by a field
    decision, and no --allow-phi."""
    if allow_phi:
        return []
    return [f for f in findings if f.published and f.blocking and f.field not in allow]


def privacy_checks(findings: list[Finding], allow: Mapping[str, str],
                   allow_phi: bool = False) -> list[ValidationCheck]:
    """Four checks: blocking findings in what is published (an error unless ``allow_phi``),
    site and card findings (a warning), reviewed fields (info), and what stays here (info)."""
    kept = [f for f in findings if f.published and f.field not in allow]
    blocking = [f for f in kept if f.blocking]
    site = [f for f in kept if not f.blocking]
    reviewed = [f for f in findings if f.published and f.field in allow]
    local = [f for f in findings if not f.published]
    details = _listing(blocking, 30)
    if blocking:
        fields = sorted({f.field for f in blocking if f.field})
        details += (
            "\nThese are published. Remove or shift them in the source (BIDS "
            "de-identification), or decide per field in schema.py: "
            f"privacy=Privacy(drop=({', '.join(repr(k) for k in fields[:3])},)) removes sidecar "
            "keys from what is published; Privacy(allow={field: 'reason'}) publishes a field "
            "you reviewed." if not allow_phi
            else "\n--allow-phi (allow_phi=True) given: reported, not blocking.")
    checks = [
        ValidationCheck(name="no personal information published", expected=0,
                        actual=len(blocking), passed=not blocking, details=details,
                        severity="warning" if allow_phi else "error"),
        ValidationCheck(name="no site-identifying fields published", expected=0,
                        actual=len(site), passed=not site,
                        details=_grouped(site, "published") + (
                            "\nReviewed and fine to publish? Say so in schema.py: "
                            "Privacy(allow={field: 'reason'})." if site else ""),
                        severity="warning"),
    ]
    if reviewed:
        fields = sorted({f.field for f in reviewed})
        checks.append(ValidationCheck(
            name="reviewed fields published as decided", expected="-", actual=len(fields),
            passed=True, severity="info"))
    if local:
        checks.append(ValidationCheck(
            name="fields in files that are not published", expected="-", actual=len(local),
            passed=False, severity="info", details=_grouped(local)))
    return checks


def _listing(findings: list[Finding], limit: int) -> str:
    lines = [str(f) for f in findings[:limit]]
    if len(findings) > limit:
        files = sorted({f.path for f in findings[limit:]})
        lines.append(f"... and {len(findings) - limit} more, in {summarize_paths(files)}")
    return "\n".join(lines)


def _grouped(findings: list[Finding], how: str = "not published") -> str:
    """One line per field: how many files carry it, an example, and what it holds."""
    by_field: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_field[f.field or f.where].append(f)
    return "\n".join(f"{field}: {len(found)} file(s) {how}, e.g. {shown(found[0].path)} "
                     f"({found[0].what})" for field, found in sorted(by_field.items()))
