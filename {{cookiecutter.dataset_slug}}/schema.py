"""Schema of {{ cookiecutter.dataset_name }}: which BIDS files feed which column.

Fill this in, or have one proposed from the data (the current file is kept as a .bak):

    python push.py --bids-root /path/to/bids --infer-schema --write

Each column reads as: name -> BIDS query -> type. one(...) holds one image per row
(Nifti), many(...) a list in natural order (List(Nifti)). Entities use pybids names
(subject, session, acquisition, run, description, ...) or file-name keys (acq, run, desc).
sidecar=True adds <column>_sidecar, the image's JSON sidecar (BIDS inheritance applied):
acquisition parameters (RepetitionTime, SliceTiming...) that a BOLD or DWI series is not
usable without.
"""

from bids_hf import Expected, Privacy, Schema, many, one  # noqa: F401  (used in examples)

SCHEMA = Schema(
    # One example per "subject", "session" (subjects without sessions: one row each) or "image".
    row="session",
    columns={
        "t1w": one(datatype="anat", suffix="T1w"),
        # "t2w": many(datatype="anat", suffix="T2w"),                   # every T2w run
        # "bold_rest": many(suffix="bold", task="rest", sidecar=True),  # + TR, slice timing
        # "dwi": many(suffix="dwi", companions=("bval", "bvec"), sidecar=True),
        # "lesion": one(pipeline="lesion_masks", suffix="mask", desc="lesion"),  # derivatives/
        # "flair": "anat/*_FLAIR.nii.gz",                                # a glob is one(glob)
    },
    metadata={
        # "participants.tsv": {"age": "float32", "sex": "string"},     # n/a is null
    },
    # Decisions on fields that look personal (push.py's privacy check names them):
    # privacy=Privacy(
    #     allow={"InstitutionName": "named in the data paper"},  # published as is, reviewed
    #     drop=("AcquisitionTime",),     # removed from published sidecars (files untouched)
    #     defaced="yes",                 # or "not-needed"; required for a public repo
    # ),
    # Counts checked before anything is built (fill in what you expect):
    expected=Expected(),
)
