"""The template bakes into exactly the expected repo, rejects bad answers, and the baked
repo's own tests pass (structure on a replica, and real data through BIDS_ROOT)."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TEMPLATE_ROOT
from cookiecutter.exceptions import FailedHookException

CORE = TEMPLATE_ROOT / "{{cookiecutter.dataset_slug}}" / "bids_hf"
CORE_FILES = sorted(p.relative_to(CORE).as_posix() for p in CORE.rglob("*") if p.is_file())


def repo_files(repo: Path) -> set[str]:
    return {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}


def expected_files(module: str) -> set[str]:
    return {
        ".gitignore", "PUBLISHING.md", "README.md", "push.py", "pyproject.toml", "schema.py",
        "package.json", "package-lock.json",  # NiiVue for the review page (npm ci)
        f"{module}.py", "tests/test_validation.py", "slurm/build_shards.sbatch",
        *(f"bids_hf/{name}" for name in CORE_FILES),
    }


def test_bake_defaults_gives_exactly_the_expected_files(bake: Callable[..., Path]) -> None:
    repo = bake()
    assert repo.name == "my-bids-dataset"
    assert repo_files(repo) == expected_files("my_bids_dataset")
    for path in repo.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "{{" not in text and "{%" not in text, f"unrendered Jinja in {path}"
    builder = (repo / "my_bids_dataset.py").read_text()
    assert "class MyBidsDatasetBuilder(BidsBuilder):" in builder
    assert 'HF_REPO_ID = "my-org/my-bids-dataset"' in builder


def test_vendored_core_is_identical_to_the_template(bake: Callable[..., Path]) -> None:
    repo = bake(dataset_slug="arc")
    match, mismatch, errors = filecmp.cmpfiles(CORE, repo / "bids_hf", CORE_FILES, shallow=False)
    assert mismatch == [] and errors == []
    assert len(match) == len(CORE_FILES) > 10


def test_bake_with_bids_root_infers_the_schema(bake: Callable[..., Path], arc_tree: Path) -> None:
    repo = bake(dataset_name="ARC", bids_root=str(arc_tree))
    schema = (repo / "schema.py").read_text()
    assert "'t1w': many(datatype='anat', suffix='T1w')" in schema
    assert "pipeline='lesion_masks'" in schema
    assert "'wab_type': 'string'" in schema
    assert "rows=" in schema and "subjects=5" in schema
    compile(schema, "schema.py", "exec")


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"dataset_slug": "Bad Slug!"}, "dataset_slug 'Bad Slug!'"),
        ({"dataset_slug": "ok", "module_name": "schema"}, "module_name 'schema'"),
        ({"dataset_slug": "ok", "module_name": "2fast"}, "module_name '2fast'"),
        ({"hf_repo_id": "no-slash"}, "hf_repo_id 'no-slash'"),
        ({"hf_repo_id": "org/bad--name"}, "hf_repo_id 'org/bad--name'"),
        ({"bids_root": "/no/such/folder"}, "bids_root '/no/such/folder' is not a folder"),
    ],
)
def test_pre_gen_rejects_bad_answers(bake: Callable[..., Path], tmp_path: Path,
                                     capfd: pytest.CaptureFixture[str],
                                     context: dict[str, str], message: str) -> None:
    with pytest.raises(FailedHookException):
        bake(**context)
    err = capfd.readouterr().err
    assert message in err
    baked = tmp_path / "baked"
    assert not baked.exists() or not any(baked.iterdir()), "a rejected bake left files behind"


def test_cli_rejects_unknown_keys(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "cookiecutter"
    done = subprocess.run(
        [str(cli), "--no-input", "-o", str(tmp_path), str(TEMPLATE_ROOT), "dataset_slug=x",
         "bidsroot=/data/ds"], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "unknown key 'bidsroot'" in done.stderr and "Did you mean bids_root?" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_generated_repo_tests_pass(bake: Callable[..., Path], arc_tree: Path) -> None:
    """The baked repo's own suite: structure tests on a replica of its inferred schema, and
    the real-data test against the tree it was inferred from (BIDS_ROOT)."""
    repo = bake(dataset_name="ARC", dataset_slug="arc", bids_root=str(arc_tree))
    env = {**os.environ, "BIDS_ROOT": str(arc_tree)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout


@pytest.mark.slow
def test_generated_repo_skips_real_data_without_bids_root(bake: Callable[..., Path]) -> None:
    repo = bake()
    env = {k: v for k, v in os.environ.items() if k != "BIDS_ROOT"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"],
                          cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed, 1 skipped" in done.stdout
    assert "set BIDS_ROOT=/path/to/bids to check the real dataset" in done.stdout


def test_post_gen_says_how_to_infer_later_when_it_cannot(bake: Callable[..., Path],
                                                         tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    """A folder that is not BIDS (or an environment without the core's dependencies): the
    repo is still generated, with the template schema and instructions."""
    not_bids = tmp_path / "not-bids"
    not_bids.mkdir()
    repo = bake(dataset_slug="later", bids_root=str(not_bids))
    out = capfd.readouterr().out
    assert "Could not infer schema.py here" in out
    assert f"python push.py --bids-root {not_bids} --infer-schema > schema.py" in out
    assert '"t1w": one(datatype="anat", suffix="T1w")' in (repo / "schema.py").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="cruft needs git")
def test_cruft_update_brings_a_new_core_and_keeps_the_maintainers_schema(tmp_path: Path) -> None:
    """A generated repo takes a new release of the vendored core with `cruft update`."""
    cruft = str(Path(sys.executable).parent / "cruft")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]

    def run(*cmd: str, cwd: Path) -> None:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    template = tmp_path / "template"
    shutil.copytree(TEMPLATE_ROOT, template, ignore=shutil.ignore_patterns(
        ".git", ".venv", "*cache*", "demo-output", "__pycache__"))
    run("git", "init", "-q", cwd=template)
    run(*git, "add", "-A", cwd=template)
    run(*git, "commit", "-qm", "template", cwd=template)
    run(cruft, "create", "--no-input", str(template), "--output-dir", str(tmp_path),
        "--extra-context", '{"dataset_slug": "arc"}', cwd=tmp_path)
    repo = tmp_path / "arc"
    run("git", "init", "-q", cwd=repo)
    schema = repo / "schema.py"
    schema.write_text(schema.read_text().replace('"t1w": one(', '"t1w": many('))
    run(*git, "add", "-A", cwd=repo)
    run(*git, "commit", "-qm", "generated, schema filled in", cwd=repo)

    version = template / "{{cookiecutter.dataset_slug}}" / "bids_hf" / "_version.py"
    version.write_text('"""Version of the vendored core."""\n\n__version__ = "99.0.0"\n')
    run(*git, "commit", "-qam", "core 99.0.0", cwd=template)
    run(cruft, "update", "-y", cwd=repo)
    assert '__version__ = "99.0.0"' in (repo / "bids_hf" / "_version.py").read_text()
    assert '"t1w": many(' in schema.read_text()
