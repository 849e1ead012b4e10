"""Validate, build, stage, verify and publish {{ cookiecutter.dataset_name }}.

    python push.py --bids-root ROOT --out DIR                   # everything but the upload
    python push.py --bids-root ROOT --out DIR --repo-id ORG/NAME
    python push.py --bids-root ROOT --infer-schema > schema.py  # propose a schema
    python push.py --help                                       # all options
"""

import sys

from bids_hf._cli import main
from {{ cookiecutter.module_name }} import {{ cookiecutter.__class_name }} as BUILDER

if __name__ == "__main__":
    sys.exit(main(BUILDER))
