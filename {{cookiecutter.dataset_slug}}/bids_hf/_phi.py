"""Privacy checks: fields that look like personal health information, per file.

What is scanned, before anything is built:

* the tables about people — ``participants.tsv``, ``phenotype/*.tsv``, sessions and scans
  tables (not lookup tables such as ``*_dseg.tsv``): column names that name identity or contact data (name, birth date, address, phone, MRN,
  ...) and values that look like e-mail addresses, phone or social-security numbers,
  DICOM-style names (``DOE^JANE``) or exact calendar dates (BIDS shifts dates to the 1800s
  for de-identification; ``acq_time`` with a real year is flagged);
* JSON sidecars: keys known to carry identity, dates or the site (``PatientName``,
  ``PatientID``, ``PatientBirthDate``, ``InstitutionAddress``, ``AcquisitionDateTime``...);
* NIfTI headers of every claimed image: the text fields ``descrip``, ``aux_file``,
  ``db_name``, ``intent_name`` and the header extensions (DICOM or JSON extensions can
  carry a whole DICOM header), for DICOM identity tags and the value patterns above, and
  for runs of capitalised words that read like a person's name.

What it cannot catch: faces in the images themselves (deface anatomical scans, e.g. with
pydeface or mri_deface, and check with a montage), burned-in text, identifiers in free
text that match no pattern, or re-identification from the combination of innocuous
values. A clean report is a screen, not a guarantee.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ._tables import read_tsv
from ._util import summarize_paths
from ._validate import ValidationCheck

# Sidecar keys: identity or exact dates (blocking) vs the site (reported).
IDENTITY_KEYS = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthName", "PatientAddress",
    "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames", "PatientMotherBirthName",
    "MedicalRecordLocator", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "AccessionNumber", "StudyID", "StudyInstanceUID", "SeriesInstanceUID",
    "InstitutionAddress", "AcquisitionDateTime", "AcquisitionDate", "StudyDate", "SeriesDate",
    "ContentDate", "PatientBirthTime",
}
SITE_KEYS = {"InstitutionName", "InstitutionalDepartmentName", "StationName",
             "DeviceSerialNumber"}
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
                       "ReferringPhysicianName", "InstitutionAddress")
_HEADER_TEXT = {"descrip": (148, 80), "aux_file": (228, 24), "db_name": (14, 18),
                "intent_name": (328, 16)}


@dataclass(frozen=True)
class Finding:
    """One field in one file that looks like personal information."""

    path: str  # BIDS-relative
    where: str  # column, key or header field
    what: str
    blocking: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.what}"


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


def scan_tables(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    tables = sorted({*root.glob("participants.tsv"), *root.glob("phenotype/*.tsv"),
                     *root.glob("sub-*/sub-*_sessions.tsv"), *root.glob("sub-*/sub-*_scans.tsv"),
                     *root.glob("sub-*/ses-*/sub-*_scans.tsv")})
    for path in tables:
        rel = path.relative_to(root).as_posix()
        try:
            frame = read_tsv(path)
        except ValueError:
            continue  # unreadable tables are reported by the metadata checks
        for column in frame.columns:
            if _NAME_COLUMNS.search(column):
                findings.append(Finding(rel, f"column {column!r}",
                                        "its name suggests identity or contact data"))
            for value in frame[column].tolist():
                hits = scan_text(str(value))
                if hits:
                    findings.append(Finding(rel, f"column {column!r}",
                                            f"value {str(value)[:40]!r} looks like {hits[0]}"))
                    break  # one finding per column is enough to act on
    return findings


def scan_sidecars(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".", "code/")) or "/." in rel:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            if isinstance(value, str) and _REDACTED.match(value):
                continue
            if key in IDENTITY_KEYS:
                findings.append(Finding(rel, f"key {key!r}", "identity or date field of the "
                                        "DICOM header; remove it from the sidecar"))
            elif key in SITE_KEYS:
                findings.append(Finding(rel, f"key {key!r}", f"names the site ({str(value)[:30]!r})",
                                        blocking=False))
            elif isinstance(value, str) and (hits := scan_text(value)):
                findings.append(Finding(rel, f"key {key!r}", f"value looks like {hits[0]}"))
    return findings


def scan_nifti_header(rel: str, head: bytes) -> list[Finding]:
    """Text fields and extensions of a NIfTI-1 header (``head``: the first bytes of the
    decompressed file, up to the image data)."""
    findings: list[Finding] = []
    for field, (offset, size) in _HEADER_TEXT.items():
        text = head[offset:offset + size].split(b"\0", 1)[0].decode("latin-1").strip()
        if not text:
            continue
        hits = scan_text(text)
        name = _looks_like_name(text)
        if hits:
            findings.append(Finding(rel, f"header {field}", f"{text[:40]!r} looks like {hits[0]}"))
        elif name:
            findings.append(Finding(rel, f"header {field}",
                                    f"{text[:40]!r} contains what reads like a name ({name!r})"))
    if len(head) > 352 and head[348] == 1:  # extensions present
        extension = head[352:].decode("latin-1")
        tags = [t for t in DICOM_IDENTITY_TAGS if t in extension]
        if tags:
            findings.append(Finding(rel, "header extension", f"carries DICOM fields {tags}"))
        elif hits := scan_text(extension):
            findings.append(Finding(rel, "header extension", f"contains {hits[0]}"))
    return findings


def phi_checks(findings: list[Finding], allowed: bool) -> list[ValidationCheck]:
    """Two checks: identity/date findings (blocking unless ``allowed``) and site findings."""
    blocking = [f for f in findings if f.blocking]
    site = [f for f in findings if not f.blocking]
    files = sorted({f.path for f in blocking})
    details = "\n".join(str(f) for f in blocking[:30])
    if len(blocking) > 30:
        details += f"\n... {len(blocking) - 30} more, in {summarize_paths(files)}"
    if blocking:
        details += ("\nRemove or shift these fields (BIDS de-identification), or pass "
                    "--allow-phi if you are sure they are not personal information."
                    if not allowed else "\n--allow-phi given: reported, not blocking.")
    return [
        ValidationCheck(name="no personal information (PHI)", expected=0, actual=len(blocking),
                        passed=not blocking, details=details,
                        severity="warning" if allowed else "error"),
        ValidationCheck(name="no site-identifying fields", expected=0, actual=len(site),
                        passed=not site, details="\n".join(str(f) for f in site[:10]),
                        severity="warning"),
    ]
