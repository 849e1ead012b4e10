"""Validate, build, stage, verify and publish {{ cookiecutter.dataset_name }}.

    python push.py --bids-root ROOT --out DIR                   # everything but the upload
    python push.py --bids-root ROOT --out DIR --repo-id ORG/NAME
    python push.py --bids-root ROOT --infer-schema > schema.py  # propose a schema
    python push.py --help                                       # all options
"""

import importlib
import os
import sys

# Before pyarrow loads: its allocator (mimalloc) gives freed pages back to the OS after a
# delay, and a build's peak memory then grows with the number of shards it writes.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

from bids_hf._cli import main

BUILDER_MODULE, BUILDER_CLASS = "{{ cookiecutter.module_name }}", "{{ cookiecutter.__class_name }}"


def load_builder():
    """The dataset builder class (imports schema.py, so schema errors surface here)."""
    return getattr(importlib.import_module(BUILDER_MODULE), BUILDER_CLASS)


if __name__ == "__main__":
    sys.exit(main(load_builder))
