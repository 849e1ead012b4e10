"""Fixtures shared by the template's tests: synthetic cohorts, baking, real bids-examples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TEMPLATE_ROOT))  # `examples` (which also puts the core on the path)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # hubserver, hub_fixtures

import examples  # noqa: F401
from examples.cohorts import make_aomic, make_arc, make_isles24

pytest_plugins = ["hub_fixtures"]

BIDS_EXAMPLES = Path(os.environ.get("BIDS_EXAMPLES",
                                    TEMPLATE_ROOT.parent / "shared" / "bids-examples"))
SCHEMAS = TEMPLATE_ROOT / "examples" / "schemas"


@pytest.fixture(scope="session")
def arc_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ARC-shaped tree; read-only for tests (copy it to modify)."""
    return make_arc(tmp_path_factory.mktemp("arc") / "ds004884", subjects=5)


@pytest.fixture(scope="session")
def isles_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_isles24(tmp_path_factory.mktemp("isles") / "isles24", subjects=3)


@pytest.fixture(scope="session")
def aomic_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_aomic(tmp_path_factory.mktemp("aomic") / "piop1", subjects=3)


@pytest.fixture
def arc_copy(arc_tree: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the ARC tree."""
    return Path(shutil.copytree(arc_tree, tmp_path / "ds004884"))


def load_schema(name: str) -> Any:
    """The SCHEMA of examples/schemas/<name>.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"schema_{name}", SCHEMAS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SCHEMA


@pytest.fixture
def bake(tmp_path: Path) -> Callable[..., Path]:
    """Bake the template with cookiecutter's Python API; returns the generated repo."""
    from cookiecutter.main import cookiecutter

    def _bake(**context: str) -> Path:
        out = tmp_path / "baked"
        return Path(cookiecutter(str(TEMPLATE_ROOT), no_input=True, output_dir=str(out),
                                 extra_context=context))

    return _bake


@pytest.fixture
def arc_repo(bake: Callable[..., Path]) -> Path:
    """A repo baked for the ARC tree, with the reference ARC schema as its schema.py."""
    repo = bake(dataset_name="ARC", dataset_slug="arc", hf_repo_id="test-org/arc")
    shutil.copy(SCHEMAS / "arc.py", repo / "schema.py")
    return repo


def run_push(repo: Path, *args: str, env: dict[str, str] | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The generated repo's push.py, as a maintainer runs it."""
    return subprocess.run([sys.executable, "push.py", *args], cwd=repo, env=env,
                          capture_output=True, text=True, check=False, timeout=timeout)


# What the Hub tests add to every push.py run (the validator is tested on its own).
HUB_PUSH_FLAGS = ("--no-progress", "--no-bids-validator", "--max-retries", "2")


def check(rowset: Any, name: str) -> Any:
    """The check called ``name`` among those row assembly reported."""
    return next(c for c in rowset.checks if c.name == name)


def bids_example(name: str) -> Path:
    """A dataset of the shared bids-examples, or skip when they are not available."""
    path = BIDS_EXAMPLES / name
    if not path.is_dir():
        pytest.skip(f"bids-examples not available ({BIDS_EXAMPLES})")
    return path


class Staged:
    """The result of running the pipeline on a tree: rows, plan, manifest and the folder."""

    def __init__(self, rowset: Any, plan: Any, manifest: Any, out: Path, result: Any) -> None:
        self.rowset, self.plan, self.manifest, self.out = rowset, plan, manifest, out
        self.result = result  # the pipeline's own Staged


def run_pipeline(root: Path, schema: Any, out: Path, **options: Any) -> Staged:
    """collect -> stage (build, card, manifest, verification), as push.py does; the rows
    must apply cleanly and the folder must verify. ``options``: fields of Options."""
    from bids_hf import Options, collect, stage
    from bids_hf._card import CardMeta

    rowset = collect(root, schema)
    blocking = [c for c in rowset.checks if c.blocking]
    assert not blocking, "\n".join(f"{c.name}: {c.details}" for c in blocking)
    settings = {"progress": False, "bids_validator": False, **options}
    staged = stage(rowset, out, CardMeta(slug=out.name), Options(**settings))
    assert staged.ok, staged.checks.summary() + "\n" + staged.verification.summary()
    return Staged(rowset, staged.plan, staged.manifest, out, staged)
