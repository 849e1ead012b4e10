"""push.py as a maintainer runs it, in a baked repo: exit codes, messages, nothing half-done."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
    assert re.search(r"ok\s+embedded images equal sources \(sha256\)", done.stderr)
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
    assert "Traceback" not in done.stderr
    # --infer-schema still works, since it is how a broken schema.py is replaced.
    assert push(arc_repo, "--bids-root", str(arc_tree), "--infer-schema").returncode == 0
