"""Synthetic BIDS trees shaped like three real cohorts, with real NIfTI images (nibabel).

* ``make_arc``: the Aphasia Recovery Cohort (OpenNeuro ds004884): sub-*/ses-* with anat
  T1w/T2w/FLAIR (acq-/run- entities, some sessions with two runs), func bold for
  task-naming40 and task-rest with sbref and JSON sidecars, dwi with bval/bvec (AP/PA),
  derivatives/lesion_masks, and participants.tsv where ``wab_type`` is the literal text
  ``None`` for some people (no aphasia) and ``n/a`` when missing.
* ``make_isles24``: ISLES'24 stroke: ses-01 acute CT (ncct, cta, ctp) with perfusion maps
  (tmax, mtt, cbf, cbv) in derivatives; ses-02 follow-up dwi and adc with a lesion mask;
  no participants.tsv, clinical data in phenotype/clinical.tsv.
* ``make_aomic``: AOMIC-PIOP1: subjects without sessions, T1w, dwi runs, bold for six
  tasks, participants.tsv with age, sex, handedness.
* ``make_scanner``: what a newcomer brings from the scanner: real images shipped with
  nibabel (an anatomical volume, a 4-D BOLD run) converted to BIDS with dcm2niix-style JSON
  sidecars, which carry the site (InstitutionName, InstitutionAddress, StationName,
  DeviceSerialNumber) and the time of day (AcquisitionTime) beside acquisition parameters.
* ``make_index_tree``: a large tree of empty files, for indexing benchmarks.

Sizes are configurable: tiny (tests) to gigabytes (benchmarks). Everything is deterministic
for a given seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bids_hf.testing import write_dwi_companions, write_json, write_nifti, write_tsv

from . import PROJECT_TEMPLATE  # noqa: F401  (puts the vendored core on the path)

Shape = tuple[int, int, int]
REPETITION_TIME = {"naming40": 2.0, "rest": 1.65}  # ARC's tasks (top-level sidecars)


def _new_dataset(root: Path, name: str, seed: int = 0,
                 **description: object) -> np.random.Generator:
    """Create ``root`` with its dataset_description.json; the generator's random source."""
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "dataset_description.json",
               {"Name": name, "BIDSVersion": "1.10.0", "DatasetType": "raw", **description})
    return np.random.default_rng(seed)


def make_arc(root: Path, subjects: int = 4, max_sessions: int = 3, shape: Shape = (10, 10, 8),
             volumes: int = 4, seed: int = 0) -> Path:
    """An ARC-shaped tree. ``shape`` is the anat volume; func/dwi are 4-D with ``volumes``."""
    rng = _new_dataset(
        root, "Aphasia Recovery Cohort (synthetic)", seed, License="CC0",
        Authors=["Synthetic Author A", "Synthetic Author B"],
        DatasetDOI="doi:10.18112/openneuro.ds004884.v1.0.1",
        HowToAcknowledge="Cite the ARC data descriptor.",
        ReferencesAndLinks=["https://openneuro.org/datasets/ds004884"])
    for task, tr in REPETITION_TIME.items():
        write_json(root / f"task-{task}_bold.json", {"RepetitionTime": tr, "TaskName": task})
    func_shape = (shape[0], shape[1], max(2, shape[2] // 2), volumes)
    people = []
    wab_types = ["Broca", "Anomic", "None", "Conduction", "n/a", "Global", "None", "Wernicke"]
    for i in range(subjects):
        sub = f"M{2001 + i * 3}"
        n_ses = int(rng.integers(1, max_sessions + 1))
        sessions = sorted(int(s) for s in rng.choice(np.arange(1, 5000), n_ses, replace=False))
        for ses_num in sessions:
            ses = str(ses_num)
            base = root / f"sub-{sub}" / f"ses-{ses}"
            pre = f"sub-{sub}_ses-{ses}"
            for run in range(1, 2 + int(rng.random() < 0.25)):
                write_nifti(base / "anat" / f"{pre}_run-{run}_T1w.nii.gz", shape)
            t2_acq = "spc3p2" if rng.random() < 0.6 else "tse3"
            for run in range(1, 2 + int(rng.random() < 0.3)):
                write_nifti(base / "anat" / f"{pre}_acq-{t2_acq}_run-{run}_T2w.nii.gz", shape)
            if rng.random() < 0.7:
                write_nifti(base / "anat" / f"{pre}_acq-tse3_run-1_FLAIR.nii.gz", shape)
            for task, prob in (("naming40", 0.6), ("rest", 0.8)):
                if rng.random() < prob:
                    runs = 2 if task == "rest" and rng.random() < 0.3 else 1
                    for run in range(1, runs + 1):
                        stem = f"{pre}_task-{task}_run-{run}"
                        write_nifti(base / "func" / f"{stem}_bold.nii.gz", func_shape,
                                    tr=REPETITION_TIME[task])
                        write_nifti(base / "func" / f"{stem}_sbref.nii.gz", func_shape[:3])
                        write_json(base / "func" / f"{stem}_bold.json",
                                   {"PhaseEncodingDirection": "j-"})
            for acq in ["AP"] + (["PA"] if rng.random() < 0.4 else []):
                dwi = write_nifti(base / "dwi" / f"{pre}_acq-{acq}_dwi.nii.gz",
                                  (*shape, volumes))
                write_dwi_companions(dwi, volumes)
            if rng.random() < 0.85:
                lesion = (root / "derivatives" / "lesion_masks" / f"sub-{sub}" / f"ses-{ses}"
                          / "anat")
                write_nifti(lesion / f"{pre}_desc-lesion_mask.nii.gz", shape, kind="mask")
        wab = wab_types[i % len(wab_types)]
        people.append({
            "participant_id": f"sub-{sub}",
            "age_at_stroke": "n/a" if i % 7 == 5 else f"{int(rng.integers(35, 80))}",
            "sex": "M" if rng.random() < 0.6 else "F",
            "race": "w" if rng.random() < 0.8 else "b",
            "wab_aq": "n/a" if wab == "n/a" else f"{rng.uniform(20, 100):.1f}",
            "wab_days": f"{int(rng.integers(100, 5000))}",
            "wab_type": wab,
        })
    write_tsv(root / "participants.tsv", people)
    write_json(root / "derivatives" / "lesion_masks" / "dataset_description.json", {
        "Name": "lesion_masks", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "manual tracing"}]})
    return root


def make_isles24(root: Path, subjects: int = 3, shape: Shape = (10, 10, 8), volumes: int = 4,
                 seed: int = 0) -> Path:
    rng = _new_dataset(root, "ISLES 2024 (synthetic)", seed, License="CC BY-NC 4.0",
                       Authors=["Synthetic Author"])
    clinical = []
    for i in range(subjects):
        sub = f"stroke{i + 1:04d}"
        ct = root / f"sub-{sub}" / "ses-01" / "ct"
        pre1 = f"sub-{sub}_ses-01"
        write_nifti(ct / f"{pre1}_ncct.nii.gz", shape)
        write_nifti(ct / f"{pre1}_cta.nii.gz", shape)
        write_nifti(ct / f"{pre1}_ctp.nii.gz", (*shape, volumes))
        maps = root / "derivatives" / "perfusion_maps" / f"sub-{sub}" / "ses-01" / "ct"
        for m in ("tmax", "mtt", "cbf", "cbv"):
            write_nifti(maps / f"{pre1}_space-ncct_{m}.nii.gz", shape)
        pre2 = f"sub-{sub}_ses-02"
        dwi = root / f"sub-{sub}" / "ses-02" / "dwi"
        write_nifti(dwi / f"{pre2}_dwi.nii.gz", shape)
        write_nifti(dwi / f"{pre2}_adc.nii.gz", shape)
        masks = root / "derivatives" / "lesion_masks" / f"sub-{sub}" / "ses-02" / "dwi"
        write_nifti(masks / f"{pre2}_space-ncct_desc-lesion_mask.nii.gz", shape, kind="mask")
        clinical.append({"participant_id": f"sub-{sub}", "age": f"{int(rng.integers(40, 90))}",
                         "sex": "F" if rng.random() < 0.5 else "M",
                         "nihss_admission": f"{int(rng.integers(0, 30))}",
                         "mrs_3month": "n/a" if i % 4 == 3 else f"{int(rng.integers(0, 6))}"})
    write_tsv(root / "phenotype" / "clinical.tsv", clinical)
    for pipeline in ("perfusion_maps", "lesion_masks"):
        write_json(root / "derivatives" / pipeline / "dataset_description.json", {
            "Name": pipeline, "BIDSVersion": "1.10.0", "DatasetType": "derivative"})
    return root


AOMIC_TASKS = ("restingstate", "emomatching", "faces", "gstroop", "workingmemory", "anticipation")


def make_aomic(root: Path, subjects: int = 3, shape: Shape = (10, 10, 8), volumes: int = 4,
               seed: int = 0) -> Path:
    rng = _new_dataset(root, "AOMIC-PIOP1 (synthetic)", seed, License="CC0",
                       Authors=["Synthetic Author"])
    people = []
    for i in range(subjects):
        sub = f"{i + 1:04d}"
        base = root / f"sub-{sub}"
        write_nifti(base / "anat" / f"sub-{sub}_T1w.nii.gz", shape)
        for run in range(1, 2 + int(rng.random() < 0.5)):
            dwi = write_nifti(base / "dwi" / f"sub-{sub}_run-{run}_dwi.nii.gz", (*shape, volumes))
            write_dwi_companions(dwi, volumes)
        for task in AOMIC_TASKS:
            if rng.random() < 0.8:
                acq = "mb3" if task == "restingstate" else "seq"
                write_nifti(base / "func" / f"sub-{sub}_task-{task}_acq-{acq}_bold.nii.gz",
                            (shape[0], shape[1], shape[2] // 2 or 1, volumes))
        people.append({"participant_id": f"sub-{sub}", "age": f"{rng.uniform(18, 26):.2f}",
                       "sex": "male" if rng.random() < 0.5 else "female",
                       "handedness": "right" if rng.random() < 0.9 else "left"})
    write_tsv(root / "participants.tsv", people)
    return root


def _scanner_sidecar(series: str, **parameters: object) -> dict[str, object]:
    """What dcm2niix writes next to an image: acquisition parameters, and fields that name
    the site and the time of day."""
    return {
        "Modality": "MR", "MagneticFieldStrength": 3, "Manufacturer": "Siemens",
        "ManufacturersModelName": "Prisma_fit", "InstitutionName": "Example University Hospital",
        "InstitutionalDepartmentName": "Radiology", "InstitutionAddress":
        "Hospital Street 1,Example Town,District,DE,12345", "DeviceSerialNumber": "166038",
        "StationName": "AWP166038", "SoftwareVersions": "syngo MR XA30",
        "SeriesDescription": series, "ProtocolName": series, "AcquisitionTime":
        "14:32:10.512500", "ConversionSoftware": "dcm2niix",
        "ConversionSoftwareVersion": "v1.0.20230411", **parameters,
    }


def make_scanner(root: Path, subjects: int = 3) -> Path:
    """A small tree of real images with dcm2niix-style sidecars (see the module docstring)."""
    import gzip

    import nibabel as nib
    from nibabel.testing import data_path

    _new_dataset(root, "Scanner export (nibabel example images)", License="PDDL",
                 Authors=["Example Lab"])
    anatomical = gzip.compress((Path(data_path) / "anatomical.nii").read_bytes(), mtime=0)
    people = []
    for i in range(subjects):
        sub = f"{i + 1:02d}"
        base = root / f"sub-{sub}"
        (base / "anat").mkdir(parents=True)
        (base / "anat" / f"sub-{sub}_T1w.nii.gz").write_bytes(anatomical)
        write_json(base / "anat" / f"sub-{sub}_T1w.json", _scanner_sidecar(
            "t1_mprage", EchoTime=0.00226, RepetitionTime=2.3, InversionTime=0.9, FlipAngle=8))
        (base / "func").mkdir()
        bold = nib.load(Path(data_path) / "example4d.nii.gz")
        # Its header says a TR of 2000 s (milliseconds written as seconds): the sidecar's
        # 2.0 s is right, and the BIDS validator compares the two.
        bold.header.set_zooms((*bold.header.get_zooms()[:3], 2.0))
        nib.save(bold, base / "func" / f"sub-{sub}_task-rest_bold.nii.gz")
        write_json(base / "func" / f"sub-{sub}_task-rest_bold.json", _scanner_sidecar(
            "rest_bold", EchoTime=0.03, RepetitionTime=2.0, FlipAngle=75,
            PhaseEncodingDirection="j-", TaskName="rest",
            SliceTiming=[round(k * 2.0 / 24, 4) for k in range(24)]))
        dwi = write_nifti(base / "dwi" / f"sub-{sub}_dwi.nii.gz", (16, 16, 12, 4))
        write_dwi_companions(dwi, 4)
        write_json(base / "dwi" / f"sub-{sub}_dwi.json", _scanner_sidecar(
            "dwi_ap", EchoTime=0.089, RepetitionTime=3.2, PhaseEncodingDirection="j-",
            TotalReadoutTime=0.05))
        people.append({"participant_id": f"sub-{sub}", "age": str(30 + 7 * i),
                       "sex": "F" if i % 2 else "M"})
    write_tsv(root / "participants.tsv", people)
    return root


def make_index_tree(root: Path, n_files: int = 50_000, files_per_session: int = 25) -> Path:
    """A tree of ``n_files`` empty files (NIfTI and JSON), for indexing speed only."""
    _new_dataset(root, "index benchmark")
    kinds = [("anat", "T1w"), ("anat", "T2w"), ("anat", "FLAIR"), ("dwi", "dwi"), ("func", "bold")]
    made = 0
    sub = 0
    while made < n_files:
        sub += 1
        for ses in (1, 2):
            folder = root / f"sub-{sub:05d}" / f"ses-{ses}"
            for k in range(files_per_session // 2 + 1):
                datatype, suffix = kinds[k % len(kinds)]
                stem = f"sub-{sub:05d}_ses-{ses}_run-{k + 1}_{suffix}"
                (folder / datatype).mkdir(parents=True, exist_ok=True)
                for ext in (".nii.gz", ".json"):
                    (folder / datatype / f"{stem}{ext}").touch()
                    made += 1
                if made >= n_files:
                    return root
    return root
