"""push.py's command line: index -> rows -> checks -> plan -> shards -> stage -> verify -> upload.

Each stage prints one line; everything that can fail before building does so before a
single shard is written. Exit codes: 0 success, 1 a check or verification failed, 2 bad
input or usage (the message says which file and what to do), 3 the upload failed.
Messages go to stderr; stdout carries only results (the inferred schema, the summary).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._util import human_bytes

if TYPE_CHECKING:
    from ._builder import BidsBuilder

EXIT_OK, EXIT_CHECKS, EXIT_INPUT, EXIT_UPLOAD = 0, 1, 2, 3


def build_parser(prog: str = "push.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Validate a BIDS dataset, build Parquet shards with the NIfTI bytes "
                    "embedded, stage them with a dataset card, verify, and optionally upload.",
    )
    p.add_argument("--bids-root", type=Path, default=os.environ.get("BIDS_ROOT"),
                   help="the BIDS dataset folder (default: $BIDS_ROOT)")
    p.add_argument("--out", type=Path,
                   help="staging folder (default: staging/<dataset>/<revision>)")
    p.add_argument("--infer-schema", action="store_true",
                   help="print a proposed schema.py for --bids-root and exit")
    p.add_argument("--repo-id", help="upload to this Hub dataset repo (ORG/NAME)")
    p.add_argument("--public", action="store_true", help="create the repo public (default private)")
    p.add_argument("--revision", default="main", help="branch to upload to (default: main)")
    p.add_argument("--create-pr", action="store_true",
                   help="upload as a pull request (the remote check then runs on merge)")
    p.add_argument("--check-load", action="store_true",
                   help="after upload, stream the first rows back with datasets.load_dataset")
    p.add_argument("--verify-remote", choices=("metadata", "full"), default="metadata",
                   help="after upload, compare the Hub's file metadata with the manifest "
                        "(default), or also download and hash every file (full)")
    p.add_argument("--upload-only", action="store_true",
                   help="upload an already staged and verified --out (resume an upload "
                        "without re-checking the tree)")
    p.add_argument("--verify-only", action="store_true",
                   help="only compare the Hub copy of --repo-id with --out's manifest")
    p.add_argument("--max-retries", type=int, default=5,
                   help="retries of a failed Hub request before giving up (default 5)")
    p.add_argument("--http-timeout", type=float, default=300.0,
                   help="seconds to wait on one Hub request before retrying (default 300)")
    p.add_argument("--max-shard-size",
                   help="largest shard (default: as in OUT's saved plan, else 500MB)")
    p.add_argument("--row-group-size",
                   help="largest row group; peak memory grows with it (default: as in OUT's "
                        "saved plan, else 64MB)")
    p.add_argument("--num-proc", type=int, default=1, help="processes for checks and shards")
    p.add_argument("--plan-only", action="store_true",
                   help="write the shard plan to OUT/.bids_hf/plan.json and exit")
    p.add_argument("--shards", metavar="I-J",
                   help="build only these shards of the plan (e.g. 0-9), for job arrays")
    p.add_argument("--strict", action="store_true",
                   help="NIfTI files claimed by no column, and BIDS validator errors, block")
    p.add_argument("--allow-phi", action="store_true",
                   help="upload even if fields that look like personal information are found")
    p.add_argument("--no-integrity", action="store_true",
                   help="skip decompressing every image before the build (not recommended)")
    p.add_argument("--no-bids-validator", action="store_true",
                   help="skip the official BIDS validator even if it is installed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(load_builder: Callable[[], type[BidsBuilder]], argv: Sequence[str] | None = None) -> int:
    """Run push.py. ``load_builder`` imports the dataset module (and with it schema.py)
    inside the error handling, so a mistake in schema.py gets a message, not a crash."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    remote_only = args.upload_only or args.verify_only
    if remote_only:
        if not (args.repo_id and args.out):
            _say("error: --upload-only and --verify-only need --repo-id and --out.")
            return EXIT_INPUT
    elif args.bids_root is None:
        _say("error: --bids-root is required (or set BIDS_ROOT).")
        return EXIT_INPUT
    try:
        if remote_only:
            return _upload(args, args.out, image_columns=None, split=None)
        builder = _load(load_builder, args.infer_schema)
        return _run(builder, args)
    except KeyboardInterrupt:
        _say("interrupted; rerun the same command to resume.")
        return EXIT_CHECKS
    except _input_errors() as err:
        _say(f"error: {err}")
        return EXIT_INPUT
    except Exception:  # noqa: BLE001  (unexpected: show the traceback, it is a bug to report)
        _say(traceback.format_exc())
        _say("error: unexpected failure (traceback above). Rerunning resumes from the last "
             "finished shard.")
        return EXIT_CHECKS


def _load(load_builder: Callable[[], type[BidsBuilder]], inferring: bool) -> type[BidsBuilder] | None:
    from ._schema import SchemaError

    try:
        return load_builder()
    except SchemaError as err:
        if inferring:  # --infer-schema is how a broken schema.py gets replaced
            return None
        raise SchemaError(f"schema.py: {err}") from err


def _input_errors() -> tuple[type[Exception], ...]:
    from ._index import BidsIndexError
    from ._plan import PlanError
    from ._schema import SchemaError
    from ._stage import StagingError
    from ._tables import TableError

    return (BidsIndexError, SchemaError, TableError, PlanError, StagingError, FileNotFoundError)


def _run(builder: type[BidsBuilder] | None, args: argparse.Namespace) -> int:
    from ._engine import check, stage_verified
    from ._index import index_bids
    from ._infer import infer_schema
    from ._plan import DEFAULT_MAX_SHARD_SIZE, DEFAULT_ROW_GROUP_SIZE, plan_shards, read_plan
    from ._rows import assemble_rows
    from ._schema import Schema
    from ._shards import STATE_DIR, build_shards
    from ._stage import claim_staging_dir

    t0 = time.perf_counter()
    index = index_bids(args.bids_root)
    _say(f"index: {len(index.files)} files ({len(index.nifti_on_disk)} NIfTI), "
         f"{len(index.subjects)} subjects, {len(index.pipelines)} derivatives pipeline(s) "
         f"in {time.perf_counter() - t0:.1f} s")
    if args.infer_schema:
        print(infer_schema(index), end="")
        return EXIT_OK

    assert builder is not None
    schema: Schema = builder.SCHEMA
    if args.strict and not schema.strict:
        from dataclasses import replace

        schema = replace(schema, strict=True)
    rowset = assemble_rows(index, schema)
    _say(f"rows: {len(rowset.rows)} ({schema.row}s) x {len(rowset.features)} columns, "
         f"{len(rowset.claimed)} images claimed, {len(rowset.unclaimed)} unclaimed")
    result = check(rowset, integrity=not args.no_integrity, num_proc=args.num_proc,
                   allow_phi=args.allow_phi, bids_validator=not args.no_bids_validator)
    _say(result.summary())
    if not result.all_passed:
        _say(f"error: {len(result.failures)} check(s) failed; nothing was built.")
        return EXIT_CHECKS

    meta = builder.card_meta(args.repo_id)
    out: Path = args.out or Path("staging") / meta.slug / args.revision.replace("/", "_")
    plan_file = out / STATE_DIR / "plan.json"
    saved = read_plan(plan_file) if plan_file.exists() else None
    # Sizes given here win; else those of the saved plan, so job-array tasks and the final
    # run agree with --plan-only without repeating its options.
    plan = plan_shards(
        rowset,
        args.max_shard_size or (saved.max_shard_size if saved else DEFAULT_MAX_SHARD_SIZE),
        args.row_group_size or (saved.row_group_size if saved else DEFAULT_ROW_GROUP_SIZE),
    )
    _say(f"plan: {plan.describe()}, fingerprint {plan.fingerprint[:12]}")
    if args.plan_only:
        claim_staging_dir(out, meta.slug)
        plan_file.write_text(plan.to_json(), encoding="utf-8")
        for i, spec in enumerate(plan.shards):
            print(f"{i}\t{spec.name}\t{len(spec.rows)} rows\t{human_bytes(spec.nbytes)}")
        _say(f"plan written to {plan_file}; build with --shards I-J (indices 0-"
             f"{len(plan.shards) - 1}), e.g. as a SLURM job array:\n"
             f"  BIDS_ROOT={args.bids_root} OUT={out} sbatch --array=0-{len(plan.shards) - 1} "
             "slurm/build_shards.sbatch")
        return EXIT_OK
    if args.shards:
        claim_staging_dir(out, meta.slug)
        if saved is None:
            _say("error: --shards needs the plan: run --plan-only with the same --out first.")
            return EXIT_INPUT
        if saved.fingerprint != plan.fingerprint:
            _say(f"error: the data or schema changed since {plan_file} was written; rerun "
                 "--plan-only, then the job array.")
            return EXIT_INPUT
        chosen = plan.select(args.shards)
        records = build_shards(rowset, plan, out, only=chosen, num_proc=args.num_proc,
                               progress=not args.no_progress)
        _say(f"built shards {args.shards}: {len(records)} shard(s), "
             f"{human_bytes(sum(r.size for r in records.values()))}")
        return EXIT_OK

    t1 = time.perf_counter()
    staged = stage_verified(rowset, plan, out, meta, card_source=_card_source(builder),
                            num_proc=args.num_proc, progress=not args.no_progress)
    manifest = staged.manifest
    _say(f"staged: {out} ({len(manifest.shards)} shard(s), "
         f"{human_bytes(sum(s['size'] for s in manifest.shards))}) in "
         f"{time.perf_counter() - t1:.1f} s")
    _say(staged.verification.summary())
    if not staged.verification.all_passed:
        _say("error: the staged folder failed verification; nothing was uploaded.")
        return EXIT_CHECKS
    _summary(out, manifest, rowset, time.perf_counter() - t0)
    if args.repo_id:
        return _upload(args, out, image_columns=rowset.image_columns, split=rowset.splits[0])
    return EXIT_OK


def _upload(args: argparse.Namespace, out: Path, image_columns: dict[str, bool] | None,
            split: str | None) -> int:
    import httpx2
    from huggingface_hub.utils import get_session

    from ._engine import publish_verified
    from ._hub import HubError, RetryPolicy, check_load, verify_remote

    # huggingface_hub's shared client has no timeout: a stalled connection would hang the
    # upload forever. Bound every request; a timed-out one is retried (with_retries).
    get_session().timeout = httpx2.Timeout(args.http_timeout, connect=30.0)
    policy = RetryPolicy(attempts=max(1, args.max_retries + 1))
    revision, result = args.revision, None
    full = args.verify_remote == "full"
    try:
        if args.verify_only:
            checks = verify_remote(out, args.repo_id, revision=revision, full=full,
                                   policy=policy, say=_say)
        else:
            result, checks = publish_verified(
                out, args.repo_id, private=not args.public, revision=args.revision,
                create_pr=args.create_pr, full=full, policy=policy, say=_say)
            revision = result.revision
            _say(f"uploaded {len(result.uploaded)} file(s), {len(result.unchanged)} unchanged, "
                 f"{len(result.deleted)} stale deleted; commit "
                 f"{result.commit or '(none needed)'} on {revision}")
    except HubError as err:
        _say(f"error: {err}")
        return EXIT_UPLOAD
    if args.check_load and image_columns is not None and split is not None:
        checks.add(check_load(args.repo_id, split, image_columns, revision=revision))
    _say(checks.summary())
    if not checks.all_passed:
        _say("error: the Hub copy does not match the staged folder (files named above).")
        return EXIT_CHECKS
    if result is None:
        print(f"OK: the Hub copy of {args.repo_id} ({revision}) matches {out}.")
    else:
        print(f"Published {args.repo_id} ({'private' if result.private else 'public'}, "
              f"{revision}): {result.url}")
    return EXIT_OK


def _card_source(builder: type[Any]) -> str | None:
    """The generated repo's README.md (the card's prose), next to the builder module."""
    try:
        path = Path(inspect.getfile(builder)).parent / "README.md"
    except TypeError:
        return None
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _summary(out: Path, manifest: Any, rowset: Any, seconds: float) -> None:
    rows = sum(s["num_examples"] for s in manifest.splits.values())
    print(f"OK: {rows} rows, {len(rowset.features)} columns, {len(manifest.shards)} shard(s), "
          f"{human_bytes(sum(s['size'] for s in manifest.shards))} staged in {out} "
          f"({seconds:.1f} s). Load it with datasets.load_dataset({str(out)!r}, split=...).")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
