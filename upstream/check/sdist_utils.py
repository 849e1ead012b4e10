"""Stand-ins for the helpers of datasets' ``tests/utils.py``, which its source distribution lacks.

``upstream/check.sh`` copies this file to the unpacked sdist's ``tests/utils.py`` (only when the
sdist has none), so that ``tests/test_arrow_writer.py``, ``tests/test_arrow_dataset.py`` and
``tests/test_load.py`` import and run as released. ``require_*`` skip a test when an optional
module is missing; the helpers that need datasets' own test infrastructure (offline
simulation, uploads to a fake Hub) skip the test that calls them, with a reason saying so.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from contextlib import contextmanager
from enum import Enum
from importlib.util import find_spec
from typing import Any

import pyarrow as pa
import pytest

_NOT_IN_SDIST = "needs a helper of datasets' tests/utils.py that the sdist does not ship"


def _require(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(find_spec(module) is None, reason=f"test requires {module}")


require_jax = _require("jax")
require_nibabel = _require("nibabel")
require_pil = _require("PIL")
require_polars = _require("polars")
require_pyspark = _require("pyspark")
require_sqlalchemy = _require("sqlalchemy")
require_tf = _require("tensorflow")
require_torch = _require("torch")
require_torchcodec = _require("torchcodec")
require_transformers = _require("transformers")
require_zstandard = _require("zstandard")
require_not_windows = pytest.mark.skipif(sys.platform == "win32",
                                         reason="test does not run on Windows")
require_numpy1_on_windows = pytest.mark.skipif(
    sys.platform == "win32", reason="test needs numpy<2 on Windows")
# dill>0.3.2 has been a datasets requirement for years: nothing to skip.
require_dill_gt_0_3_2 = pytest.mark.skipif(False, reason="")


class OfflineSimulationMode(Enum):
    CONNECTION_FAILS = 0
    CONNECTION_TIMES_OUT = 1
    HF_HUB_OFFLINE_SET_TO_1 = 2


@contextmanager
def offline(mode: OfflineSimulationMode):
    pytest.skip(f"offline simulation: {_NOT_IN_SDIST}")
    yield


def push_parquet_shards_offline(*args: Any, **kwargs: Any) -> Any:
    pytest.skip(f"offline Hub uploads: {_NOT_IN_SDIST}")


@contextmanager
def set_current_working_directory_to_temp_dir(*args: Any, **kwargs: Any):
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(*args, **kwargs) as directory:
        os.chdir(directory)
        try:
            yield
        finally:
            os.chdir(previous)


@contextmanager
def assert_arrow_memory_increases():
    gc.collect()
    before = pa.total_allocated_bytes()
    yield
    assert pa.total_allocated_bytes() > before, "Arrow memory didn't increase."


@contextmanager
def assert_arrow_memory_doesnt_increase():
    gc.collect()
    before = pa.total_allocated_bytes()
    yield
    assert pa.total_allocated_bytes() <= before, "Arrow memory wasn't expected to increase."
