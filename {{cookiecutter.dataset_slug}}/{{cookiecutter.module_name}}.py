"""{{ cookiecutter.dataset_name }}: the dataset builder (a datasets.GeneratorBasedBuilder).

Use it locally; the Hub gets Parquet shards and a card from push.py instead:

    from {{ cookiecutter.module_name }} import {{ cookiecutter.__class_name }}
    builder = {{ cookiecutter.__class_name }}(data_dir="/path/to/bids")
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
"""

from bids_hf import BidsBuilder
from schema import SCHEMA


class {{ cookiecutter.__class_name }}(BidsBuilder):
    SCHEMA = SCHEMA
    DATASET_ID = "{{ cookiecutter.dataset_slug }}"
    PRETTY_NAME = "{{ cookiecutter.dataset_name }}"
    LICENSE = "{{ cookiecutter.license }}"
    HF_REPO_ID = "{{ cookiecutter.hf_repo_id }}"
