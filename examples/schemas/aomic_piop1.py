"""AOMIC-PIOP1: one row per subject (no sessions).

DWI runs and task fMRI are lists; the task of each bold image is kept in an aligned
``bold_task`` list so a row says which image belongs to which task.
"""

from bids_hf import Schema, many, one

SCHEMA = Schema(
    row="subject",
    columns={
        "t1w": one(datatype="anat", suffix="T1w"),
        "dwi": many(datatype="dwi", suffix="dwi", companions=("bval", "bvec")),
        "bold": many(datatype="func", suffix="bold", keep=("task", "acquisition")),
    },
    metadata={
        "participants.tsv": {"age": "float32", "sex": "string", "handedness": "string"},
    },
)
