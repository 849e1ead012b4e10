"""ISLES'24 acute stroke: one row per subject, acute CT (ses-01) and follow-up MRI (ses-02).

Perfusion maps and lesion masks come from derivatives; there is no participants.tsv, so
the clinical table under phenotype/ provides the metadata.
"""

from bids_hf import Schema, one

ACUTE, FOLLOW_UP = {"session": "01"}, {"session": "02"}

SCHEMA = Schema(
    row="subject",
    columns={
        "ncct": one(suffix="ncct", **ACUTE),
        "cta": one(suffix="cta", **ACUTE),
        "ctp": one(suffix="ctp", **ACUTE),
        "tmax": one(pipeline="perfusion_maps", suffix="tmax", **ACUTE),
        "mtt": one(pipeline="perfusion_maps", suffix="mtt", **ACUTE),
        "cbf": one(pipeline="perfusion_maps", suffix="cbf", **ACUTE),
        "cbv": one(pipeline="perfusion_maps", suffix="cbv", **ACUTE),
        "dwi": one(suffix="dwi", **FOLLOW_UP),
        "adc": one(suffix="adc", **FOLLOW_UP),
        "lesion_mask": one(pipeline="lesion_masks", suffix="mask", desc="lesion", **FOLLOW_UP),
    },
    metadata={
        "phenotype/clinical.tsv": {
            "age": "float32",
            "sex": "string",
            "nihss_admission": "int32",
            "mrs_3month": "int32",
        },
    },
)
