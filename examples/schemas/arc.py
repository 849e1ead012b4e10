"""Aphasia Recovery Cohort (ARC, OpenNeuro ds004884): one row per scanning session.

Every anatomical and functional series is a list (sessions may hold several runs);
lesion masks come from derivatives/lesion_masks. The released dataset has 230 subjects
and 902 sessions: add expected=Expected(subjects=230, rows=902, ...) when publishing it.
"""

from bids_hf import Schema, many, one

SCHEMA = Schema(
    row="session",
    columns={
        "t1w": many(datatype="anat", suffix="T1w"),
        "t2w": many(datatype="anat", suffix="T2w"),
        "flair": many(datatype="anat", suffix="FLAIR"),
        "bold_naming40": many(datatype="func", suffix="bold", task="naming40", sidecar=True),
        "bold_rest": many(datatype="func", suffix="bold", task="rest", sidecar=True),
        "sbref": many(datatype="func", suffix="sbref"),
        "dwi": many(datatype="dwi", suffix="dwi", companions=("bval", "bvec")),
        "lesion": one(pipeline="lesion_masks", suffix="mask", desc="lesion"),
    },
    metadata={
        "participants.tsv": {
            "age_at_stroke": "float32",
            "sex": "string",
            "race": "string",
            "wab_aq": "float32",
            "wab_days": "float32",
            "wab_type": "string",  # "None" (no aphasia) is a value; only n/a is null
        },
    },
    configs={"anat": ["t1w", "t2w", "flair", "lesion", "age_at_stroke", "sex", "wab_aq"]},
)
