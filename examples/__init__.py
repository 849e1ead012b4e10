"""Examples of the template repo: synthetic cohort generators, example schemas, the demo.

The vendored core lives in the template's project folder; put it on the path so the
examples (and the template's tests and benchmarks) import the same ``bids_hf`` that every
generated repo gets.
"""

import sys
from pathlib import Path

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
PROJECT_TEMPLATE = TEMPLATE_ROOT / "{{cookiecutter.dataset_slug}}"
if str(PROJECT_TEMPLATE) not in sys.path:
    # cookiecutter copies everything in the project folder into every generated repo, so
    # importing the core from there must not leave __pycache__ behind.
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(PROJECT_TEMPLATE))
