"""The template bakes over its option matrix, as the README says, and each baked repo works.

The matrix (scientific-python/cookie style) is every ``license`` choice x ``bids_root`` given
or not x baked with ``cookiecutter --no-input`` and with ``cruft create --no-input``, from the
command line, with a relative ``bids_root`` (as in the README): 40 bakes. Every combination
is baked and checked: exactly the expected files, no Jinja left, the licence in the builder,
the schema inferred from the tree (or the template's example), ``.cruft.json`` from cruft,
and cruft's repo byte for byte cookiecutter's. For each licence, the repo baked with a BIDS
root stages its card in-process, through its own builder, and the card's YAML carries the
licence. The baked repo's own test suite takes a few seconds a run, so it runs on four
combinations: each ``bids_root`` state x each tool, each with another licence (the licence is
one line of the builder, checked everywhere above).

Also here: the answers the hooks reject, the lists that must agree (licences, the slug rule,
the README's install line), post-gen's messages when it cannot infer, ``cruft update`` on a
repo baked as documented, and two baked repos installed side by side.
"""

from __future__ import annotations

import ast
import filecmp
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SCHEMAS, TEMPLATE_ROOT
from cookiecutter.exceptions import FailedHookException

from examples.cohorts import make_arc

PROJECT = TEMPLATE_ROOT / "{{cookiecutter.dataset_slug}}"
CORE = PROJECT / "bids_hf"
CORE_FILES = sorted(p.relative_to(CORE).as_posix() for p in CORE.rglob("*") if p.is_file())
COOKIECUTTER_JSON = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
LICENSES: list[str] = COOKIECUTTER_JSON["license"]
TOOLS = ("cookiecutter", "cruft")
BIN = Path(sys.executable).parent
TEMPLATE_SCHEMA_LINE = '"t1w": one(datatype="anat", suffix="T1w")'
INFERRED_MARK = "Proposed from the tree"

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="cruft needs git")


def repo_files(repo: Path) -> set[str]:
    return {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}


def expected_files(module: str) -> set[str]:
    return {
        ".gitignore", "PUBLISHING.md", "README.md", "push.py", "pyproject.toml", "schema.py",
        "package.json", "package-lock.json",  # NiiVue for the review page (npm ci)
        f"{module}.py", "tests/test_validation.py", "slurm/build_shards.sbatch",
        *(f"bids_hf/{name}" for name in CORE_FILES),
    }


def assert_no_jinja_left(repo: Path) -> None:
    for path in repo.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "{{" not in text and "{%" not in text, f"unrendered Jinja in {path}"


def run(*cmd: str | Path, cwd: Path, env: dict[str, str], check: bool = True,
        ) -> subprocess.CompletedProcess[str]:
    """A command as typed in a shell in ``cwd`` (a shell sets PWD to it)."""
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env={**env, "PWD": str(cwd)},
                          capture_output=True, text=True, check=False, timeout=600)
    if check:
        assert done.returncode == 0, f"{shlex.join(map(str, cmd))}\n{done.stdout}{done.stderr}"
    return done


def bake_command(tool: str, template: Path, context: dict[str, str]) -> list[str | Path]:
    """The README's non-interactive command for ``tool``."""
    if tool == "cookiecutter":
        return [BIN / "cookiecutter", "--no-input", template,
                *(f"{k}={v}" for k, v in context.items())]
    return [BIN / "cruft", "create", "--no-input", template,
            "--extra-context", json.dumps(context)]


@pytest.fixture(scope="module")
def cc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for command-line bakes: a cookiecutter config of its own, so the
    user's ~/.cookiecutterrc changes no answer and replays land in the test's folder."""
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'cookiecutters'}\n"
                      f"replay_dir: {home / 'replay'}\n", encoding="utf-8")
    return {**os.environ, "COOKIECUTTER_CONFIG": str(config)}


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory, cc_env: dict[str, str]) -> Path:
    """The template as a git repo holds it (cruft bakes from git): cookiecutter.json, the
    hooks and the project folder, without caches or build leftovers."""
    if shutil.which("git") is None:
        pytest.skip("cruft needs git")
    repo = tmp_path_factory.mktemp("template-git") / "template"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".*_cache", "*.egg-info",
                                  "node_modules", "staging")
    repo.mkdir()
    shutil.copy(TEMPLATE_ROOT / "cookiecutter.json", repo)
    shutil.copytree(TEMPLATE_ROOT / "hooks", repo / "hooks", ignore=junk)
    shutil.copytree(PROJECT, repo / PROJECT.name, ignore=junk)
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@example.org")
    run("git", "init", "-q", cwd=repo, env=cc_env)
    run(*git, "add", "-A", cwd=repo, env=cc_env)
    run(*git, "commit", "-qm", "template", cwd=repo, env=cc_env)
    return repo


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-subject ARC-shaped tree (3 sessions, 25 NIfTI); read-only."""
    return make_arc(tmp_path_factory.mktemp("tiny") / "ds", subjects=1)


# ----------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Combo:
    tool: str
    license: str
    with_root: bool

    @property
    def id(self) -> str:
        return f"{self.tool}-{self.license}-{'root' if self.with_root else 'noroot'}"


COMBOS = [Combo(t, lic, r) for t in TOOLS for lic in LICENSES for r in (True, False)]
# The baked repo's own suite: each bids_root state x each tool, each with another licence.
SUITE = [Combo("cookiecutter", "auto", True), Combo("cruft", "cc-by-nc-sa-4.0", True),
         Combo("cookiecutter", "other", False), Combo("cruft", "odbl", False)]


@dataclass
class Baked:
    here: Path  # where the command ran
    repo: Path
    done: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def matrix(template_repo: Path, tiny_tree: Path, cc_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> dict[Combo, Baked]:
    """Every combination, baked from the command line in a folder of its own holding
    ``data/ds``; cookiecutter writes into ``out/`` (so a relative bids_root is shown to be
    read from the folder the command runs in, not the output folder), cruft into the folder
    itself. Two bakes at a time: most of a bake is another process (inference)."""
    base = tmp_path_factory.mktemp("matrix")

    def bake(combo: Combo) -> Baked:
        here = base / combo.id
        (here / "data").mkdir(parents=True)
        (here / "data" / "ds").symlink_to(tiny_tree)
        context = {"dataset_name": "ARC", "dataset_slug": "arc", "license": combo.license,
                   **({"bids_root": "data/ds"} if combo.with_root else {})}
        cmd = bake_command(combo.tool, template_repo, context)
        if combo.tool == "cookiecutter":
            cmd[2:2] = ["--output-dir", "out"]
        done = run(*cmd, cwd=here, env=cc_env, check=False)
        return Baked(here, here / "out" / "arc" if combo.tool == "cookiecutter" else here / "arc",
                     done)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(COMBOS, pool.map(bake, COMBOS), strict=True))


@needs_git
@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: c.id)
def test_every_combination_bakes_the_expected_repo(matrix: dict[Combo, Baked],
                                                   combo: Combo) -> None:
    baked = matrix[combo]
    assert baked.done.returncode == 0, baked.done.stdout + baked.done.stderr
    repo = baked.repo
    cruft_file = {".cruft.json"} if combo.tool == "cruft" else set()
    assert repo_files(repo) == expected_files("arc") | cruft_file
    assert_no_jinja_left(repo)
    builder = (repo / "arc.py").read_text(encoding="utf-8")
    assert "class ArcBuilder(BidsBuilder):" in builder
    assert f'    LICENSE = "{combo.license}"\n' in builder
    schema = (repo / "schema.py").read_text(encoding="utf-8")
    if combo.with_root:
        assert INFERRED_MARK in schema and "subjects=1," in schema, schema
        cd = "out/arc" if combo.tool == "cookiecutter" else "arc"
        assert (f"schema.py inferred from {baked.here / 'data' / 'ds'}: review it, then run\n"
                f"  cd {cd}\n") in baked.done.stdout, baked.done.stdout
    else:
        assert TEMPLATE_SCHEMA_LINE in schema
    assert not list(repo.glob("schema.py.*.bak")), "the template's example was kept as a backup"
    if combo.tool == "cruft":
        state = json.loads((repo / ".cruft.json").read_text(encoding="utf-8"))
        assert state["context"]["cookiecutter"]["license"] == combo.license
        assert state["context"]["cookiecutter"]["bids_root"] == ("data/ds" if combo.with_root
                                                                  else "")
        same = matrix[Combo("cookiecutter", combo.license, combo.with_root)].repo
        files = sorted(repo_files(same))
        _, mismatch, errors = filecmp.cmpfiles(same, repo, files, shallow=False)
        assert (mismatch, errors) == ([], []), "cruft and cookiecutter baked different repos"


def load_builder(repo: Path, name: str) -> Any:
    """The baked repo's builder class, imported from its file."""
    spec = importlib.util.spec_from_file_location(name, repo / "arc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ArcBuilder


@needs_git
@pytest.mark.parametrize("license_id", LICENSES)
def test_staged_card_carries_the_chosen_license(matrix: dict[Combo, Baked], tiny_tree: Path,
                                                tmp_path: Path, license_id: str) -> None:
    """As push.py stages: the baked builder's card metadata, its README as the card's prose;
    "auto" maps the tree's dataset_description.json License ("CC0")."""
    from bids_hf import Options, collect, stage
    from huggingface_hub import DatasetCard

    repo = matrix[Combo("cookiecutter", license_id, True)].repo
    builder = load_builder(repo, f"baked_{license_id.replace('-', '_')}")
    staged = stage(collect(tiny_tree, builder.SCHEMA), tmp_path / "staged",
                   builder.card_meta(None), Options(progress=False, bids_validator=False),
                   card_source=(repo / "README.md").read_text(encoding="utf-8"))
    assert staged.ok, staged.checks.summary() + staged.verification.summary()
    card = DatasetCard.load(tmp_path / "staged" / "README.md")
    assert card.data.license == ("cc0-1.0" if license_id == "auto" else license_id)
    assert card.data.pretty_name == "ARC"


@needs_git
@pytest.mark.slow
@pytest.mark.parametrize("combo", SUITE, ids=lambda c: c.id)
def test_baked_repo_own_tests_pass(matrix: dict[Combo, Baked], tiny_tree: Path,
                                   tmp_path: Path, combo: Combo) -> None:
    """The structure tests on a replica always; the real-data test against the tree the
    schema was inferred from (BIDS_ROOT) when there is one, else skipped with the reason."""
    env = {k: v for k, v in os.environ.items() if k != "BIDS_ROOT"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if combo.with_root:
        env["BIDS_ROOT"] = str(tiny_tree)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'suite'}"],
        cwd=matrix[combo].repo, env=env, capture_output=True, text=True, check=False,
        timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    if combo.with_root:
        assert "4 passed" in done.stdout, done.stdout
    else:
        assert "3 passed, 1 skipped" in done.stdout, done.stdout
        assert "set BIDS_ROOT=/path/to/bids to check the real dataset" in done.stdout


# ------------------------------------------------------------ what the hooks accept and say


def test_bake_defaults_derives_slug_module_and_class(bake: Callable[..., Path]) -> None:
    repo = bake()
    assert repo.name == "my-bids-dataset"
    assert repo_files(repo) == expected_files("my_bids_dataset")
    assert_no_jinja_left(repo)
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
        ({"dataset_slug": "Bad Slug!"}, "dataset_slug 'Bad Slug!': use lowercase letters"),
        ({"dataset_slug": "ok", "module_name": "schema"}, "module_name 'schema'"),
        ({"dataset_slug": "ok", "module_name": "2fast"}, "module_name '2fast'"),
        ({"hf_repo_id": "no-slash"}, "hf_repo_id 'no-slash'"),
        ({"hf_repo_id": "org/bad--name"}, "hf_repo_id 'org/bad--name'"),
        ({"bids_root": "/no/such/folder"},
         "bids_root '/no/such/folder' is not a folder (looked for /no/such/folder)"),
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


@pytest.mark.parametrize("tool", TOOLS)
def test_unknown_keys_are_rejected(template_repo: Path, cc_env: dict[str, str], tmp_path: Path,
                                   tool: str) -> None:
    """cookiecutter's KEY=VALUE and cruft's --extra-context both drop unknown keys silently."""
    cmd = bake_command(tool, template_repo, {"dataset_slug": "x", "bidsroot": "/data/ds"})
    done = run(*cmd, cwd=tmp_path, env=cc_env, check=False)
    assert done.returncode != 0
    assert (f"unknown key 'bidsroot' ({tool} would ignore it). Did you mean bids_root?"
            in done.stderr), done.stderr
    assert not (tmp_path / "x").exists()


def test_a_relative_bids_root_that_is_not_there_names_where_it_looked(
        template_repo: Path, cc_env: dict[str, str], tmp_path: Path) -> None:
    done = run(*bake_command("cookiecutter", template_repo,
                             {"dataset_slug": "x", "bids_root": "./data/ds"}),
               cwd=tmp_path, env=cc_env, check=False)
    assert done.returncode != 0
    assert (f"bids_root './data/ds' is not a folder (looked for {tmp_path / 'data' / 'ds'})"
            in done.stderr), done.stderr
    assert not (tmp_path / "x").exists()


def test_a_replayed_license_outside_the_choices_is_rejected(template_repo: Path,
                                                            tmp_path: Path) -> None:
    """cookiecutter and cruft refuse a licence outside cookiecutter.json's list before any
    hook runs; a replay file is not checked by them, so the pre-gen hook reads that list."""
    config = tmp_path / "config.yaml"
    config.write_text(f"replay_dir: {tmp_path / 'replay'}\n", encoding="utf-8")
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(config)}
    run(*bake_command("cookiecutter", template_repo, {"dataset_slug": "x"}), cwd=tmp_path, env=env)
    replays = list((tmp_path / "replay").glob("*.json"))
    assert len(replays) == 1
    context = json.loads(replays[0].read_text(encoding="utf-8"))
    context["cookiecutter"].update(license="cc-by-5.0", dataset_slug="y", module_name="y")
    edited = tmp_path / "edited-replay.json"
    edited.write_text(json.dumps(context), encoding="utf-8")
    done = run(BIN / "cookiecutter", "--replay-file", edited, template_repo,
               cwd=tmp_path, env=env, check=False)
    assert done.returncode != 0
    assert f"license 'cc-by-5.0': choose one of {', '.join(LICENSES)}." in done.stderr
    assert not (tmp_path / "y").exists()


def test_license_lists_agree() -> None:
    """One rule: the core owns the Hub licence ids a card can carry (every id its
    dataset_description mapping gives, and "other"); cookiecutter.json offers "auto" and
    exactly those, in that order."""
    from bids_hf._card import _LICENSES, HUB_LICENSES

    assert ["auto", *HUB_LICENSES] == LICENSES
    assert {*_LICENSES.values(), "other"} == set(HUB_LICENSES)


def hook_assignment(name: str) -> ast.expr:
    tree = ast.parse((TEMPLATE_ROOT / "hooks" / "pre_gen_project.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    raise AssertionError(f"{name} not found in hooks/pre_gen_project.py")


def test_slug_prompt_states_the_rule_the_hook_applies() -> None:
    rule = ast.literal_eval(hook_assignment("SLUG_RULE"))
    call = hook_assignment("SLUG")
    assert isinstance(call, ast.Call)
    slug = re.compile(ast.literal_eval(call.args[0]))
    assert rule in COOKIECUTTER_JSON["__prompts__"]["dataset_slug"]
    for good in ("a", "arc", "arc-aphasia", "ds004884", "aomic.piop1", "isles_24", "a" * 64):
        assert slug.match(good), good
    for bad in ("", "Arc", "-arc", "arc-", ".arc", "arc_", "arc!", "a b", "ärc", "a" * 65):
        assert not slug.match(bad), bad


def test_readme_install_line_installs_what_a_generated_repo_needs() -> None:
    """The README's pre-bake install line: cruft, and the generated repo's dependencies."""
    lines = (TEMPLATE_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("pip install cruft"))
    command = ""
    for line in lines[start:]:
        command += line.strip().removesuffix("\\") + " "
        if not line.endswith("\\"):
            break
    packages = shlex.split(command)[2:]
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))
    assert packages[0] == "cruft"
    assert packages[1:] == pyproject["project"]["dependencies"]


def test_post_gen_says_how_to_infer_later_when_it_cannot(
        bake: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """A folder that is not BIDS: the repo is still generated, with the template's schema
    and the command to run once the folder is fixed."""
    not_bids = tmp_path / "not-bids"
    not_bids.mkdir()
    monkeypatch.setenv("PWD", str(tmp_path))  # as if run from there (the repo is in baked/)
    repo = bake(dataset_slug="later", bids_root=str(not_bids))
    out = capfd.readouterr().out
    assert "schema.py was not inferred (No sub-* folders" in out, out
    assert (f"  cd baked/later\n  python push.py --bids-root {not_bids} --infer-schema "
            "--write") in out, out
    assert TEMPLATE_SCHEMA_LINE in (repo / "schema.py").read_text()
    assert repo_files(repo) == expected_files("later")


def link_installed(distributions: Iterable[str], dest: Path) -> None:
    """Symlink into ``dest`` the installed files of these distributions and of everything
    they require: an environment with exactly those packages, from this one's."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    todo, seen = list(distributions), set()
    while todo:
        try:
            dist = distribution(todo.pop())
        except PackageNotFoundError:
            continue  # an optional requirement that is not installed
        if dist.name.lower() in seen:
            continue
        seen.add(dist.name.lower())
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if not (dest / top).exists():
                (dest / top).symlink_to(Path(str(dist.locate_file(top))))
        requirements = [Requirement(r) for r in dist.requires or []]
        todo += [r.name for r in requirements if r.marker is None or r.marker.evaluate()]


def venv_with(path: Path, site: Path) -> Path:
    """A virtual environment (no pip of its own) that sees the packages under ``site``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    (Path(purelib.stdout.strip()) / "outside.pth").write_text(f"{site}\n", encoding="utf-8")
    return python


def test_post_gen_names_what_to_install_without_the_core_dependencies(
        template_repo: Path, tiny_tree: Path, cc_env: dict[str, str], tmp_path: Path) -> None:
    """cookiecutter alone, as after `pip install cookiecutter`: the repo is generated with
    the template's schema, and the message says what to install and run."""
    site = tmp_path / "site"
    site.mkdir()
    link_installed(["cookiecutter"], site)
    python = venv_with(tmp_path / "venv", site)
    lacks = subprocess.run([python, "-c", "import datasets"], capture_output=True, check=False)
    assert lacks.returncode != 0, "the environment was meant to lack datasets"
    here = tmp_path / "work"
    (here / "data").mkdir(parents=True)
    (here / "data" / "ds").symlink_to(tiny_tree)
    done = run(python, "-m", "cookiecutter", "--no-input", template_repo, "dataset_slug=later",
               "bids_root=data/ds", cwd=here, env=cc_env)
    root = here / "data" / "ds"
    assert re.search(rf"schema.py was not inferred: {re.escape(str(python))} lacks \w+, which "
                     "the repo needs", done.stdout), done.stdout
    assert (f"  cd later\n  pip install -e .\n  python push.py --bids-root {root} "
            "--infer-schema --write\n") in done.stdout
    repo = here / "later"
    assert TEMPLATE_SCHEMA_LINE in (repo / "schema.py").read_text()
    assert repo_files(repo) == expected_files("later")


# ------------------------------------------------------------- after baking: update, install


@needs_git
@pytest.mark.slow
def test_cruft_update_on_a_repo_baked_as_documented(template_repo: Path, tiny_tree: Path,
                                                    cc_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    """`cruft create` with a relative bids_root, then the maintainer's schema.py committed,
    then `cruft update` from inside the repo (where that relative path means nothing): the
    new core arrives, schema.py is kept, nothing is re-inferred."""
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@example.org")
    template = tmp_path / "template"
    run("git", "clone", "-q", template_repo, template, cwd=tmp_path, env=cc_env)
    here = tmp_path / "work"
    (here / "relative").mkdir(parents=True)
    (here / "relative" / "ds").symlink_to(tiny_tree)
    done = run(*bake_command("cruft", template, {"dataset_slug": "x",
                                                 "bids_root": "./relative/ds"}),
               cwd=here, env=cc_env)
    assert "schema.py inferred from" in done.stdout
    repo = here / "x"
    schema = repo / "schema.py"
    assert INFERRED_MARK in schema.read_text()
    reviewed = schema.read_text().replace("review every line", "reviewed")
    schema.write_text(reviewed)
    run("git", "init", "-q", cwd=repo, env=cc_env)
    run(*git, "add", "-A", cwd=repo, env=cc_env)
    run(*git, "commit", "-qm", "baked, schema reviewed", cwd=repo, env=cc_env)

    version = template / PROJECT.name / "bids_hf" / "_version.py"
    version.write_text('"""Version of the vendored core."""\n\n__version__ = "99.0.0"\n')
    run(*git, "commit", "-qam", "core 99.0.0", cwd=template, env=cc_env)
    done = run(BIN / "cruft", "update", "-y", cwd=repo, env=cc_env)
    assert "inferred" not in done.stdout + done.stderr
    assert '__version__ = "99.0.0"' in (repo / "bids_hf" / "_version.py").read_text()
    assert schema.read_text() == reviewed
    status = run("git", "status", "--porcelain", cwd=repo, env=cc_env).stdout
    assert sorted(line[3:] for line in status.splitlines()) == [".cruft.json",
                                                                 "bids_hf/_version.py"]


@pytest.mark.slow
def test_generated_repos_install_side_by_side(bake: Callable[..., Path], tmp_path: Path) -> None:
    """Two dataset repos installed editable into one environment: each builder module keeps
    its own schema.py; nothing named schema or push is installed; each push.py runs.

    Built offline, without build isolation, with this environment's setuptools (>= 70.1
    builds editable wheels without the `wheel` package)."""
    alpha, beta = bake(dataset_slug="alpha"), bake(dataset_slug="beta")
    shutil.copy(SCHEMAS / "arc.py", beta / "schema.py")
    import sysconfig

    python = venv_with(tmp_path / "venv", Path(sysconfig.get_paths()["purelib"]))
    done = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-e", alpha, "-e", beta],
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, ("pip install -e failed (building offline needs setuptools "
                                  f">= 70.1, see requirements-dev.txt):\n{done.stderr}")
    neutral = tmp_path / "neutral"
    neutral.mkdir()
    probe = """
import importlib.util, json
import alpha, beta
print(json.dumps({
    "alpha": [alpha.__file__, list(alpha.AlphaBuilder.SCHEMA.columns)],
    "beta": [beta.__file__, list(beta.BetaBuilder.SCHEMA.columns)],
    "schema": importlib.util.find_spec("schema") is not None,
    "push": importlib.util.find_spec("push") is not None,
}))
"""
    seen = subprocess.run([python, "-c", probe], cwd=neutral, capture_output=True, text=True,
                          check=False)
    assert seen.returncode == 0, seen.stderr
    found = json.loads(seen.stdout)
    assert found["alpha"] == [str(alpha / "alpha.py"), ["t1w"]]
    arc_columns = list(load_schema_columns(SCHEMAS / "arc.py"))
    assert found["beta"] == [str(beta / "beta.py"), arc_columns]
    assert len(arc_columns) > 1
    assert not found["schema"] and not found["push"]
    for repo in (alpha, beta):
        helped = subprocess.run([python, "push.py", "--help"], cwd=repo, capture_output=True,
                                text=True, check=False)
        assert helped.returncode == 0 and "usage: push.py" in helped.stdout, helped.stderr


def load_schema_columns(path: Path) -> Any:
    from bids_hf import load_schema

    return load_schema(path).columns
