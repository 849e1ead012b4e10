"""push.py as a maintainer runs it, in a baked repo: exit codes, messages, nothing half-done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_push


def push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_push(repo, "--no-progress", *args)


def test_push_stages_verifies_and_prints_the_report(arc_repo: Path, arc_tree: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "staged"
    done = push(arc_repo, "--bids-root", str(arc_tree), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")
    assert re.search(r"ok\s+every NIfTI claimed by a column", done.stderr)
    assert re.search(r"ok\s+every claimed image embedded, read back equal", done.stderr)
    assert re.search(r"ok\s+images intact \(decompressed in full\)", done.stderr)
    assert (out / "README.md").is_file() and list((out / "data").glob("train-*.parquet"))


def test_strict_run_with_unclaimed_images_stops_before_building(arc_repo: Path, arc_tree: Path,
                                                                tmp_path: Path) -> None:
    text = (arc_repo / "schema.py").read_text()
    (arc_repo / "schema.py").write_text(text.replace(
        '        "flair": many(datatype="anat", suffix="FLAIR"),\n', "").replace('"flair", ', ""))
    out = tmp_path / "staged"
    done = push(arc_repo, "--bids-root", str(arc_tree), "--out", str(out), "--strict")
    assert done.returncode == 1
    assert re.search(r"FAIL\s+every NIfTI claimed by a column", done.stderr)
    assert "anat/FLAIR:" in done.stderr
    assert "nothing was built" in done.stderr
    assert not out.exists()


def test_infer_schema_prints_only_the_schema_on_stdout(arc_repo: Path, arc_tree: Path) -> None:
    done = push(arc_repo, "--bids-root", str(arc_tree), "--infer-schema")
    assert done.returncode == 0, done.stderr
    namespace: dict = {}
    exec(done.stdout, namespace)  # noqa: S102  (running the generated schema.py is the test)
    assert "t1w" in namespace["SCHEMA"].columns
    assert "index:" in done.stderr


@pytest.mark.parametrize("state", ["empty", "broken", "missing"])
def test_inference_needs_no_working_schema_py(state: str, arc_repo: Path, arc_tree: Path) -> None:
    """What `--infer-schema > schema.py` does to the file before Python starts, and worse."""
    schema = arc_repo / "schema.py"
    if state == "missing":
        schema.unlink()
    else:
        schema.write_text("" if state == "empty" else "SCHEMA = Schema(columns={\n")
    shell = subprocess.run(f"{sys.executable} push.py --bids-root {arc_tree} --infer-schema "
                           "--no-progress > schema.py", shell=True, cwd=arc_repo,
                           capture_output=True, text=True, check=False)
    assert shell.returncode == 0, shell.stderr
    assert "SCHEMA = Schema(" in schema.read_text()
    assert push(arc_repo, "--bids-root", str(arc_tree), "--out", str(arc_repo.parent / "o")
                ).returncode == 0  # the written schema is a working one


def test_infer_write_replaces_schema_atomically_and_keeps_a_backup(arc_repo: Path,
                                                                  arc_tree: Path) -> None:
    schema = arc_repo / "schema.py"
    maintained = schema.read_text() + "# the maintainer's careful edits\n"
    schema.write_text(maintained)
    done = push(arc_repo, "--bids-root", str(arc_tree), "--infer-schema", "--write")
    assert done.returncode == 0, done.stderr
    backups = list(arc_repo.glob("schema.py.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == maintained
    assert f"wrote {schema}" in done.stderr and backups[0].name in done.stderr
    assert "SCHEMA = Schema(" in schema.read_text() and done.stdout == ""
    again = push(arc_repo, "--bids-root", str(arc_tree), "--infer-schema", "--write")
    assert again.returncode == 0 and len(list(arc_repo.glob("schema.py.*.bak"))) == 1, \
        "an unchanged proposal needs no second backup"


def test_out_inside_the_bids_root_is_refused(arc_repo: Path, arc_copy: Path) -> None:
    done = push(arc_repo, "--bids-root", str(arc_copy), "--out", str(arc_copy / "staged"))
    assert done.returncode == 2
    assert "is inside the BIDS root" in done.stderr and "Traceback" not in done.stderr
    assert not (arc_copy / "staged").exists()


def test_a_missing_token_is_reported_before_the_build(arc_repo: Path, arc_tree: Path,
                                                      tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "hf")  # no stored login either
    out = tmp_path / "o"
    done = run_push(arc_repo, "--no-progress", "--bids-root", str(arc_tree), "--out", str(out),
                    "--repo-id", "test-org/arc", env=env)
    assert done.returncode == 3
    assert "no Hugging Face token found" in done.stderr and "Nothing was built" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--repo-id", "no-namespace"], "is not a Hub repo id"),
    (["--repo-id", "org/bad--name"], "is not a Hub repo id"),
    (["--max-retries", "-1"], "--max-retries must be 0 (try once) or more"),
    (["--write"], "--write goes with --infer-schema"),
])
def test_usage_mistakes_are_found_before_any_work(arc_repo: Path, arc_tree: Path, tmp_path: Path,
                                                  args: list[str], message: str) -> None:
    done = push(arc_repo, "--bids-root", str(arc_tree), "--out", str(tmp_path / "o"), *args)
    assert done.returncode == 2 and message in done.stderr
    assert "index:" not in done.stderr and not (tmp_path / "o").exists()


def test_public_upload_needs_a_defacing_attestation(arc_repo: Path, arc_tree: Path,
                                                    tmp_path: Path) -> None:
    done = push(arc_repo, "--bids-root", str(arc_tree), "--out", str(tmp_path / "o"),
                "--repo-id", "test-org/arc", "--public")
    assert done.returncode == 2
    assert "--public needs an attestation that anatomical images are defaced" in done.stderr
    assert "push.py --review" in done.stderr and not (tmp_path / "o").exists()


def test_missing_root_is_a_clear_input_error(arc_repo: Path, tmp_path: Path) -> None:
    done = push(arc_repo, "--bids-root", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "does not exist or is not a folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_staging_folder_of_another_dataset_is_refused(arc_repo: Path, arc_tree: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "staged"
    (out / ".bids_hf").mkdir(parents=True)
    (out / ".bids_hf" / "staging.json").write_text('{"dataset": "isles24"}')
    done = push(arc_repo, "--bids-root", str(arc_tree), "--out", str(out))
    assert done.returncode == 2
    assert "is the staging folder of dataset 'isles24', not 'arc'" in done.stderr


def test_a_mistake_in_schema_py_is_a_message_not_a_traceback(arc_repo: Path, arc_tree: Path,
                                                             tmp_path: Path) -> None:
    text = (arc_repo / "schema.py").read_text()
    (arc_repo / "schema.py").write_text(text.replace('suffix="FLAIR"', 'sufix="FLAIR"'))
    done = push(arc_repo, "--bids-root", str(arc_tree), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "error: schema.py: Unknown BIDS entity 'sufix'. Did you mean suffix?" in done.stderr
    assert "Traceback" not in done.stderr and "resume" not in done.stderr
    # --infer-schema still works, since it is how a broken schema.py is replaced.
    assert push(arc_repo, "--bids-root", str(arc_tree), "--infer-schema").returncode == 0


def test_review_of_a_folder_without_shards_is_a_message(arc_repo: Path, arc_tree: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "staged"
    assert push(arc_repo, "--bids-root", str(arc_tree), "--out", str(out)).returncode == 0
    for shard in (out / "data").rglob("*.parquet"):
        shard.unlink()
    done = push(arc_repo, "--bids-root", str(arc_tree), "--out", str(out), "--review")
    assert done.returncode == 2, done.stderr
    assert "no data/*.parquet in this staged folder" in done.stderr
    assert "Traceback" not in done.stderr
