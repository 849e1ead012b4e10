"""Test setup for datasets' tests run from its source distribution.

``upstream/check.sh`` copies this file to the unpacked sdist's ``tests/conftest.py`` (only when
the sdist has none). The sdist ships ``tests/test_*.py`` but not their ``conftest.py``,
``utils.py`` or ``fixtures/``. This file gives what the run needs and nothing it would have to
guess:

* every test gets its own ``datasets`` cache under pytest's temp dir (never ``~/.cache``),
  no progress bars, and no implicit Hub token;
* four small fixtures, made here: ``jsonl_path``, ``image_file``, ``mockfs`` and
  ``set_sqlalchemy_silence_uber_warning`` (which every ``test_arrow_dataset.py`` test class uses);
* a test that asks for any other fixture of datasets' ``tests/fixtures/`` (files of known
  content, a fake Hub) is skipped, its reason naming the missing fixtures, rather than being
  run against a guess of their content;
* the run is offline (``HF_HUB_OFFLINE=1``, set by ``check.sh``): a test that fails because it
  tried to reach a remote filesystem or the Hub is reported as skipped, with that reason. Only
  failures caused by huggingface_hub's ``OfflineModeIsEnabled`` (raised, or named by the
  ``ConnectionError`` datasets re-raises it as) are turned into skips.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import datasets
import datasets.config
import fsspec
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem, stringify_path
from huggingface_hub.errors import OfflineModeIsEnabled


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        missing = sorted(n for n in info.names_closure if n not in info.name2fixturedefs
                         and n != "request")
        if missing:
            item.add_marker(pytest.mark.skip(
                reason=f"needs fixtures of datasets' tests/fixtures (not in the sdist): {missing}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and call.excinfo is not None and _reached_out(call.excinfo.value):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           "Skipped: tried to reach the network (the run is offline)")
    return report


def _reached_out(error: BaseException | None) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        # datasets re-raises some as ConnectionError("Couldn't reach ... (OfflineModeIsEnabled)")
        if isinstance(error, OfflineModeIsEnabled) or (
                isinstance(error, ConnectionError) and "OfflineModeIsEnabled" in str(error)):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@pytest.fixture(autouse=True)
def _datasets_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path_factory.getbasetemp() / "cache" / "datasets"
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr("datasets.config.DOWNLOADED_DATASETS_PATH", str(cache / "downloads"))
    monkeypatch.setattr("datasets.config.EXTRACTED_DATASETS_PATH",
                        str(cache / "downloads" / "extracted"))
    monkeypatch.setattr("datasets.config.HF_UPDATE_DOWNLOAD_COUNTS", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_IMPLICIT_TOKEN", True)


@pytest.fixture(autouse=True, scope="session")
def _no_progress_bars() -> None:
    datasets.disable_progress_bar()


@pytest.fixture
def set_sqlalchemy_silence_uber_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLAlchemy 1.4 warns about 2.0 incompatibilities unless told not to; nothing to do without it.
    if find_spec("sqlalchemy") is not None:
        monkeypatch.setattr("sqlalchemy.util.deprecations.SILENCE_UBER_WARNING", True,
                            raising=False)


@pytest.fixture(scope="session")
def jsonl_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("data") / "dataset.jsonl"
    rows = [{"col_1": str(i), "col_2": i, "col_3": float(i)} for i in range(4)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="session")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    pil_image = pytest.importorskip("PIL.Image")
    import numpy as np

    path = tmp_path_factory.mktemp("data") / "test_image_rgb.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    pil_image.fromarray(pixels).save(path, format="jpeg")
    return str(path)


class _MockFileSystem(DirFileSystem):
    """The ``mock://`` protocol: a local folder seen through fsspec as a remote filesystem."""

    protocol = "mock"

    def __init__(self, *args, local_root_dir: str, **kwargs):
        super().__init__(*args, path=local_root_dir, fs=LocalFileSystem(), **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        path = stringify_path(path)
        return path.removeprefix("mock://")


@pytest.fixture
def mockfs(tmp_path: Path):
    fsspec.register_implementation("mock", _MockFileSystem, clobber=True)
    root = tmp_path / "mockfs"
    root.mkdir()
    return _MockFileSystem(local_root_dir=str(root))
