"""push.py's command line: the pipeline (``_pipeline``) with a line of output per step.

Everything that can fail before building does so before a shard is written. Messages go to
stderr; stdout carries only results (the inferred schema, the summary). Exit codes, one per
category of ``_errors``: 0 success, 1 a check failed (the files are named), 2 bad input or
usage, 3 the Hub, 4 this machine (disk, lock, a missing package), 70 a bug (a traceback to
report), 130 interrupted.
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

from ._errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BidsHfError,
    HubError,
    InputError,
)
from ._util import first_lines, human_bytes, shown

if TYPE_CHECKING:
    from ._builder import BidsBuilder
    from ._pipeline import Options
    from ._rows import RowSet

EXIT_CHECKS, EXIT_INPUT, EXIT_UPLOAD = EXIT_CODES["checks"], EXIT_CODES["input"], EXIT_CODES["hub"]


def build_parser(prog: str = "push.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Validate a BIDS dataset, build Parquet shards with the NIfTI bytes "
                    "embedded, stage them with a dataset card, verify, and optionally upload.",
        epilog="Exit codes: 0 ok, 1 a check failed, 2 bad input, 3 the Hub, 4 this machine "
               "(disk, lock, missing package), 70 a bug, 130 interrupted.",
    )
    p.add_argument("--bids-root", type=Path, default=os.environ.get("BIDS_ROOT"),
                   help="the BIDS dataset folder (default: $BIDS_ROOT)")
    p.add_argument("--out", type=Path,
                   help="staging folder (default: staging/<dataset>-<revision>)")
    p.add_argument("--infer-schema", action="store_true",
                   help="propose a schema.py for --bids-root (printed; with --write, saved)")
    p.add_argument("--write", action="store_true",
                   help="with --infer-schema: replace schema.py, keeping the old one as a "
                        "timestamped .bak file")
    p.add_argument("--review", action="store_true",
                   help="serve a review page of every row on 127.0.0.1 (images from --out's "
                        "shards when given) until interrupted")
    p.add_argument("--port", type=int, default=0, help="port of --review (default: any free)")
    p.add_argument("--repo-id", help="upload to this Hub dataset repo (ORG/NAME)")
    p.add_argument("--public", action="store_true", help="create the repo public (default private)")
    p.add_argument("--affirm-defaced", action="store_true",
                   help="attest that anatomical images are defaced (needed for --public "
                        "unless schema.py says Privacy(defaced=...))")
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
                   help="retries of a failed Hub request (0: try once; default 5)")
    p.add_argument("--http-timeout", type=float, default=300.0,
                   help="seconds one Hub request may stall before it is retried (default 300)")
    p.add_argument("--max-shard-size",
                   help="largest Parquet file (default: as in OUT's saved plan, else 32MB, one "
                        "row group per file; larger when the Hub's 10,000 files per folder "
                        "would not do)")
    p.add_argument("--row-group-size",
                   help="largest row group; peak memory grows with it (default: as in OUT's "
                        "saved plan, else 32MB)")
    p.add_argument("--num-proc", type=int, default=None,
                   help="CPUs to use (default: every CPU this process may use)")
    p.add_argument("--plan-only", action="store_true",
                   help="write the shard plan to OUT/.bids_hf/plan.json and exit")
    p.add_argument("--shards", metavar="I-J",
                   help="build only these shards of the plan (e.g. 0-9), for job arrays")
    p.add_argument("--strict", action="store_true",
                   help="NIfTI files claimed by no column, and BIDS validator errors, block")
    p.add_argument("--allow-phi", action="store_true",
                   help="make every privacy finding a warning (a last resort: prefer "
                        "Privacy(allow=..., drop=...) in schema.py)")
    p.add_argument("--no-integrity", action="store_true",
                   help="do not inflate every image in full while building (headers are "
                        "still checked; not recommended)")
    p.add_argument("--no-bids-validator", action="store_true",
                   help="skip the official BIDS validator even if it is installed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def options_from(args: argparse.Namespace) -> Options:
    from ._pipeline import Options

    return Options(
        max_shard_size=args.max_shard_size, row_group_size=args.row_group_size,
        num_proc=args.num_proc, integrity=not args.no_integrity,
        bids_validator=not args.no_bids_validator, strict=args.strict,
        allow_phi=args.allow_phi, progress=not args.no_progress, private=not args.public,
        revision=args.revision, create_pr=args.create_pr, verify_remote=args.verify_remote,
        check_load=args.check_load, max_retries=args.max_retries,
        http_timeout=args.http_timeout, affirm_defaced=args.affirm_defaced)


def main(load_builder: Callable[[], type[BidsBuilder]], argv: Sequence[str] | None = None, *,
         schema_file: Path | None = None) -> int:
    """Run push.py. ``load_builder`` imports the dataset module (and with it schema.py)
    inside the error handling, so a mistake in schema.py gets a message, not a crash;
    ``schema_file`` is where ``--infer-schema --write`` writes."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.no_progress:  # huggingface_hub's bars too (the upload's, hf_xet's)
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    try:
        _usage(args)
        if args.infer_schema:
            return _infer(args, schema_file)
        if args.upload_only or args.verify_only:
            return _upload(args, options_from(args), args.out, rowset=None)
        builder = _load(load_builder)
        return _run(builder, args)
    except KeyboardInterrupt:
        _say("interrupted. Rerun the same command to resume: finished shards are kept.")
        return EXIT_INTERRUPTED
    except BidsHfError as err:
        _say(f"error: {err}")
        # Most resumable errors say themselves how to resume: say it once.
        if err.resumable and "rerun" not in str(err).lower():
            _say("Rerun the same command to resume: finished shards are reused.")
        return err.exit_code
    except Exception:  # noqa: BLE001  (unforeseen: show the traceback, it is a bug to report)
        _say(traceback.format_exc())
        _say("error: unexpected failure (traceback above); please report it with the command "
             "you ran. Nothing unverified was uploaded.")
        return EXIT_CODES["bug"]


def _usage(args: argparse.Namespace) -> None:
    """Mistakes in the command itself, found before any work."""
    if (args.upload_only or args.verify_only) and not (args.repo_id and args.out):
        raise InputError("--upload-only and --verify-only need --repo-id and --out.")
    if not (args.upload_only or args.verify_only) and args.bids_root is None:
        raise InputError("--bids-root is required (or set BIDS_ROOT).")
    if args.write and not args.infer_schema:
        raise InputError("--write goes with --infer-schema.")
    if args.max_retries < 0:
        raise InputError("--max-retries must be 0 (try once) or more.")
    if args.repo_id:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(args.repo_id)
            if "/" not in args.repo_id:
                raise HFValidationError("it needs a namespace")
        except HFValidationError as err:
            raise InputError(f"--repo-id {args.repo_id!r} is not a Hub repo id ({err}). "
                             "Use ORG/NAME, e.g. my-lab/arc-aphasia.") from None


def _load(load_builder: Callable[[], type[BidsBuilder]]) -> type[BidsBuilder]:
    try:
        return load_builder()
    except BidsHfError as err:
        raise InputError(f"schema.py: {err}") from None
    except (SyntaxError, ImportError, NameError, TypeError, AttributeError) as err:
        where = f" (line {err.lineno})" if isinstance(err, SyntaxError) and err.lineno else ""
        raise InputError(
            f"schema.py could not be loaded{where}: {type(err).__name__}: {err}. Fix it, or "
            "propose a new one with `python push.py --bids-root ROOT --infer-schema --write` "
            "(the current file is kept as a .bak).") from None


def _infer(args: argparse.Namespace, schema_file: Path | None) -> int:
    from ._infer import infer_schema, write_schema

    index = _index(args)
    text = infer_schema(index)
    if not args.write:
        print(text, end="")
        return EXIT_OK
    target = schema_file or Path("schema.py")
    backup = write_schema(target, text)
    kept = f" (the previous one is kept as {backup.name})" if backup else ""
    _say(f"wrote {target}{kept}. Review it, then run:\n  python push.py --bids-root "
         f"{shown(str(args.bids_root))} --out staging/check")
    return EXIT_OK


def _index(args: argparse.Namespace) -> Any:
    from ._index import index_bids

    t0 = time.perf_counter()
    index = index_bids(args.bids_root)
    _say(f"index: {len(index.files)} files ({len(index.nifti_on_disk)} NIfTI), "
         f"{len(index.subjects)} subjects, {len(index.pipelines)} derivatives pipeline(s) "
         f"in {time.perf_counter() - t0:.1f} s")
    return index


def _run(builder: type[BidsBuilder], args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ._pipeline import check, plan, save_plan_only, stage
    from ._rows import assemble_rows

    options = options_from(args)
    t0 = time.perf_counter()
    schema = builder.SCHEMA
    if options.strict and not schema.strict:
        schema = replace(schema, strict=True)
    if args.repo_id:
        _hub_preflight(args, schema)
    rowset = assemble_rows(_index(args), schema)
    _say(f"rows: {len(rowset.rows)} ({schema.row}s) x {len(rowset.features)} columns, "
         f"{len(rowset.claimed)} images claimed, {len(rowset.unclaimed)} unclaimed")
    if args.review:
        return _review(rowset, args, options)
    result = check(rowset, options)
    _say(result.summary())
    if not result.all_passed:
        _say(f"error: {len(result.failures)} check(s) failed; nothing was built.")
        return EXIT_CHECKS

    meta = builder.card_meta(args.repo_id)
    if args.affirm_defaced:  # attested for this upload: the card records it
        meta = replace(meta, defaced="yes")
    out: Path = args.out or Path("staging") / f"{meta.slug}-{args.revision.replace('/', '_')}"
    shard_plan = plan(rowset, out, options)
    _say(f"plan: {shard_plan.describe()}, fingerprint {shard_plan.fingerprint[:12]}")
    if args.plan_only:
        save_plan_only(rowset, out, meta, shard_plan)
        for i, spec in enumerate(shard_plan.shards):
            print(f"{i}\t{spec.name}\t{len(spec.rows)} rows\t{human_bytes(spec.nbytes)}")
        _say(f"plan written to {out}/.bids_hf/plan.json; build with --shards I-J (indices 0-"
             f"{len(shard_plan.shards) - 1}), e.g. as a SLURM job array:\n"
             f"  BIDS_ROOT={args.bids_root} OUT={out} sbatch --array=0-"
             f"{len(shard_plan.shards) - 1} slurm/build_shards.sbatch")
        return EXIT_OK
    if args.shards:
        return _build_some(rowset, out, meta, options, shard_plan, args.shards)

    t1 = time.perf_counter()
    staged = stage(rowset, out, meta, options, shard_plan=shard_plan,
                   card_source=_card_source(builder), say=_say)
    _say(staged.checks.summary())
    if staged.manifest is None or not staged.checks.all_passed:
        _say("error: the images did not pass; nothing was marked verified or uploaded."
             + (" Shards holding bad images were not kept." if staged.build.bad else ""))
        return EXIT_CHECKS
    manifest = staged.manifest
    _say(f"staged: {out} ({len(manifest.shards)} shard(s), "
         f"{human_bytes(manifest.data_bytes)}) in "
         f"{time.perf_counter() - t1:.1f} s")
    _say(staged.verification.summary())
    if not staged.verification.all_passed:
        _say("error: the staged folder failed verification; nothing was uploaded.")
        return EXIT_CHECKS
    _summary(out, manifest, rowset, time.perf_counter() - t0)
    if args.repo_id:
        return _upload(args, options, out, rowset=rowset)
    return EXIT_OK


def _build_some(rowset: RowSet, out: Path, meta: Any, options: Options, shard_plan: Any,
                spec: str) -> int:
    from ._pipeline import build_only
    from ._state import load_plan

    saved = load_plan(out)
    if saved is None:
        raise InputError(f"--shards needs the plan: run --plan-only with --out {out} first.")
    if (saved.fingerprint, saved.sources_stamp) != (shard_plan.fingerprint,
                                                    shard_plan.sources_stamp):
        raise InputError(f"the data or schema changed since {out}/.bids_hf/plan.json was "
                         "written; rerun --plan-only, then the job array.")
    built = build_only(rowset, out, meta, options, shard_plan, [spec])
    if built.bad:
        _say("error: some images are not intact; their shards were not written:\n"
             + first_lines([str(b) for b in built.bad], 20, indent="  "))
        return EXIT_CHECKS
    _say(f"built shards {spec}: {len(built.built)} written, {len(built.reused)} reused, "
         f"{human_bytes(sum(r.size for r in built.records.values()))}")
    return EXIT_OK


def _hub_preflight(args: argparse.Namespace, schema: Any) -> None:
    """What would make the upload fail, found before the build: no token, and a public
    upload without the defacing attestation."""
    from huggingface_hub import get_token

    defaced = schema.privacy.defaced or ("yes" if args.affirm_defaced else None)
    if args.public and defaced is None:
        raise InputError(
            "--public needs an attestation that anatomical images are defaced, or that the "
            "dataset needs none: set privacy=Privacy(defaced='yes' or 'not-needed') in "
            "schema.py, or pass --affirm-defaced. Look at them first: push.py --review.")
    if defaced is None:
        _say("note: no defacing attestation (Privacy(defaced=...) in schema.py); fine for a "
             "private upload, required before the repo is made public.")
    if not get_token():
        raise HubError("no Hugging Face token found: set HF_TOKEN to a token with write "
                       "access (https://huggingface.co/settings/tokens), or run "
                       "`hf auth login`. Nothing was built.")


def _review(rowset: RowSet, args: argparse.Namespace, options: Options) -> int:
    from ._pipeline import review

    review(rowset, options, staged=args.out, port=args.port, say=_say)
    return EXIT_OK


def _upload(args: argparse.Namespace, options: Options, out: Path, rowset: RowSet | None) -> int:
    from ._pipeline import publish, verify_published

    result = None
    if args.verify_only:
        checks = verify_published(out, args.repo_id, options, say=_say)
    else:
        published = publish(out, args.repo_id, options,
                            image_columns=rowset.image_columns if rowset else None,
                            split=rowset.splits[0] if rowset else None, say=_say,
                            warn=lambda message: _say(f"warning: {message}"))
        result, checks = published.result, published.remote
        assert result is not None
        _say(f"uploaded {len(result.uploaded)} file(s), {len(result.unchanged)} unchanged, "
             f"{len(result.deleted)} stale deleted; commit "
             f"{result.commit or '(none needed)'} on {result.revision}")
    _say(checks.summary())
    if not checks.all_passed:
        _say("error: the Hub copy does not match the staged folder (files named above). "
             "Rerun the same command to upload them again.")
        return EXIT_CHECKS
    if result is None:
        print(f"OK: the Hub copy of {args.repo_id} ({args.revision}) matches {out}.")
    else:
        print(f"Published {args.repo_id} ({'private' if result.private else 'public'}, "
              f"{result.revision}): {result.url}")
    return EXIT_OK


def _card_source(builder: type[Any]) -> str | None:
    """The generated repo's README.md (the card's prose), next to the builder module."""
    try:
        path = Path(inspect.getfile(builder)).parent / "README.md"
    except TypeError:
        return None
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _summary(out: Path, manifest: Any, rowset: RowSet, seconds: float) -> None:
    rows = sum(s["num_examples"] for s in manifest.splits.values())
    split = rowset.splits[0]
    print(f"OK: {rows} rows, {len(rowset.features)} columns, {len(manifest.shards)} shard(s), "
          f"{human_bytes(manifest.data_bytes)} staged in {out} "
          f"({seconds:.1f} s). Load it with "
          f"datasets.load_dataset({str(out)!r}, split={split!r}, streaming=True).")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
