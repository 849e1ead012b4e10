"""Schema of {{ cookiecutter.dataset_name }}: which BIDS files feed which column.

Fill this in, or generate a proposal from the data and review it:

    python push.py --bids-root /path/to/bids --infer-schema > schema.py

Each column reads as: name -> BIDS query -> type. one(...) holds one image per row
(Nifti), many(...) a list in natural order (List(Nifti)). Entities use pybids names
(subject, session, acquisition, run, description, ...) or file-name keys (acq, run, desc).
"""

from bids_hf import Expected, Schema, many, one  # noqa: F401  (many is used in examples)

SCHEMA = Schema(
    # One example per "subject", "session" (subjects without sessions: one row each) or "image".
    row="session",
    columns={
        "t1w": one(datatype="anat", suffix="T1w"),
        # "t2w": many(datatype="anat", suffix="T2w"),                   # every T2w run
        # "bold_rest": many(suffix="bold", task="rest"),                # aligned bold_rest_run list
        # "dwi": many(suffix="dwi", companions=("bval", "bvec")),       # + b-values and vectors
        # "lesion": one(pipeline="lesion_masks", suffix="mask", desc="lesion"),  # derivatives/
        # "flair": "anat/*_FLAIR.nii.gz",                                # a glob is one(glob)
    },
    metadata={
        # "participants.tsv": {"age": "float32", "sex": "string"},     # n/a is null
    },
    # Counts checked before anything is built (fill in what you expect):
    expected=Expected(),
)
