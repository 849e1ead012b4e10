"""{{ cookiecutter.dataset_name }}: the dataset builder (a datasets.GeneratorBasedBuilder).

Use it locally; the Hub gets Parquet shards and a card from push.py instead:

    from {{ cookiecutter.module_name }} import {{ cookiecutter.__class_name }}
    builder = {{ cookiecutter.__class_name }}(data_dir="/path/to/bids")
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
"""

from pathlib import Path

from bids_hf import BidsBuilder, load_schema


class {{ cookiecutter.__class_name }}(BidsBuilder):
    # schema.py beside this file, loaded by path: several dataset repos installed in one
    # environment each keep their own.
    SCHEMA = load_schema(Path(__file__).with_name("schema.py"))
    DATASET_ID = "{{ cookiecutter.dataset_slug }}"
    PRETTY_NAME = "{{ cookiecutter.dataset_name }}"
    LICENSE = "{{ cookiecutter.license }}"
    HF_REPO_ID = "{{ cookiecutter.hf_repo_id }}"
