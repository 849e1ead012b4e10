"""Validate, build, stage, verify and publish {{ cookiecutter.dataset_name }}.

    python push.py --bids-root ROOT --infer-schema --write      # propose schema.py (old one kept)
    python push.py --bids-root ROOT --review                    # look at every row first
    python push.py --bids-root ROOT --out DIR                   # everything but the upload
    python push.py --bids-root ROOT --out DIR --repo-id ORG/NAME
    python push.py --help                                       # all options and exit codes
"""

import importlib
import sys
from pathlib import Path

from bids_hf._cli import main

BUILDER_MODULE, BUILDER_CLASS = "{{ cookiecutter.module_name }}", "{{ cookiecutter.__class_name }}"


def load_builder():
    """The dataset builder class (it loads schema.py, so schema errors surface here)."""
    return getattr(importlib.import_module(BUILDER_MODULE), BUILDER_CLASS)


if __name__ == "__main__":
    sys.exit(main(load_builder, schema_file=Path(__file__).resolve().with_name("schema.py")))
