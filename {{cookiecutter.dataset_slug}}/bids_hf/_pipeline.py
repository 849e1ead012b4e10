"""The pipeline: every step from a BIDS root to a verified staged folder and the Hub, in order.

    collect(root, schema)                 index -> rows (schema.py applied)
    check(rowset, options)                cheap checks, all of them, before anything is written
    plan(rowset, out, options)            the shard layout, from file sizes
    stage(rowset, out, meta, options)     under a lock on the folder: one pass over the sources
                                          (read, hash, inflate, scan, embed, read back), then
                                          the card, the manifest, the verification, and the
                                          "verified" marker only if everything passed
    publish(out, repo_id, options)        upload what was verified, then check the Hub copy

push.py's command line (``_cli``), ``from_bids``/``push_to_hub`` (``_api``), the generated
repo's tests and the benchmarks call these; nothing else assembles the steps. Settings that
outlive a call (the HTTP client's timeout) are applied here, for the duration of the call,
whichever door it came through.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ._bids_validator import bids_validator_check
from ._card import CardMeta, unwritten_prose
from ._checks import image_checks, pre_build_checks, published_findings
from ._errors import ChecksFailed, DiskFullError, InputError, SourceChangedError
from ._http import RetryPolicy, http_timeout
from ._hub import PublishResult, check_load, verify_remote
from ._hub import publish as _upload
from ._index import index_bids
from ._inspect import ImageReport, inspect_file
from ._parallel import available_cpus, in_background, thread_map
from ._phi import Finding, blocking_findings
from ._plan import ShardPlan, plan_shards
from ._results import Severity, ValidationResult
from ._rows import RowSet, assemble_rows
from ._schema import Schema
from ._shards import BuildResult, build_shards, remove_temporary_files
from ._sources import changed_since_indexed
from ._stage import remove_stale, write_card_and_manifest
from ._state import (
    Manifest,
    StagingLock,
    claim,
    disk_full,
    forget_shard,
    free_space,
    load_plan,
    mark_verified,
    read_shard_record,
    require_free_space,
    save_plan,
    space_wanted,
    unmark_verified,
)
from ._util import shown
from ._verify import verify_staged

log = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """How a run goes: push.py's flags and ``push_to_hub``'s keywords fill these fields.

    Args:
        max_shard_size: largest Parquet file (``"32MB"``); ``None``: the staging folder's
            saved plan's, else 32MB (one row group per file, which keeps a consumer's
            streaming memory small), grown as needed for the Hub's files-per-folder limit.
        row_group_size: largest row group; peak memory grows with it. ``None``: the saved
            plan's, else 32MB.
        num_proc: CPUs to use; ``None``: every CPU this process may use.
        integrity: inflate every image in full while it is read (the header is checked
            regardless).
        bids_validator: run the official BIDS validator when it is installed.
        strict: NIfTI files no column claims, and validator errors, block.
        allow_phi: make every privacy finding a warning (prefer ``Privacy`` in schema.py).
        progress: show progress bars.
        private: create the Hub repo private (an existing repo keeps its visibility).
        revision: the branch to upload to.
        create_pr: upload as a pull request.
        verify_remote: ``"metadata"`` compares the Hub's file metadata with the manifest;
            ``"full"`` also downloads and hashes every file.
        check_load: after the upload, stream the first row back with ``datasets``.
        max_retries: retries of a failed Hub request before giving up.
        http_timeout: seconds one Hub request may stall before it is retried.
        affirm_defaced: attest, for this upload, that anatomical images are defaced (as
            ``Privacy(defaced="yes")`` in schema.py does).
    """

    max_shard_size: str | int | None = None
    row_group_size: str | int | None = None
    num_proc: int | None = None
    integrity: bool = True
    bids_validator: bool = True
    strict: bool = False
    allow_phi: bool = False
    progress: bool = True
    private: bool = True
    revision: str = "main"
    create_pr: bool = False
    verify_remote: Literal["metadata", "full"] = "metadata"
    check_load: bool = False
    max_retries: int = 5
    http_timeout: float = 300.0
    affirm_defaced: bool = False

    @property
    def cpus(self) -> int:
        return self.num_proc or available_cpus()

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=max(1, self.max_retries + 1))


# -- index -> rows -> checks -> plan -----------------------------------------------------------


def collect(root: str | os.PathLike[str], schema: Schema, *, strict: bool = False) -> RowSet:
    """Index the tree and apply the schema (``strict`` overrides the schema's own)."""
    if strict and not schema.strict:
        schema = replace(schema, strict=True)
    return assemble_rows(index_bids(root), schema)


def check(rowset: RowSet, options: Options) -> ValidationResult:
    """Everything checked before a shard is written (row assembly's findings included)."""
    result = ValidationResult(list(rowset.checks))
    result.extend(pre_build_checks(rowset, allow_phi=options.allow_phi))
    return result


def check_images(rowset: RowSet, options: Options) -> ValidationResult:
    """What ``stage`` checks while it builds (integrity, header privacy), without building:
    every claimed image read and inspected in a thread pool, nothing written."""
    reports = _inspect_images(rowset, options.cpus, full=options.integrity)
    bad = [f"{shown(r.path)}: {r.problem}" for r in reports if r.problem]
    findings = [f for r in reports for f in r.findings]
    return ValidationResult(image_checks(rowset, bad, findings, full=options.integrity,
                                         allow_phi=options.allow_phi))


def plan(rowset: RowSet, out: Path, options: Options) -> ShardPlan:
    """The shard plan. Sizes given in ``options`` win; else those of the plan saved in
    ``out``, so job-array tasks and the final run agree with ``--plan-only``."""
    saved = load_plan(out)
    return plan_shards(
        rowset,
        options.max_shard_size or (saved.max_shard_size if saved else None),
        options.row_group_size or (saved.row_group_size if saved else None),
    )


def refuse_out_inside_root(rowset: RowSet, out: Path) -> None:
    root, target = rowset.index.root.resolve(), out.resolve()
    if target == root or target.is_relative_to(root):
        raise InputError(f"--out {shown(str(out))} is inside the BIDS root {shown(str(root))}: "
                         "the next index would see the shards as data. Stage elsewhere, e.g. "
                         f"--out {root.parent / (root.name + '-staged')}.")


# -- stage -----------------------------------------------------------------------------------------


@dataclass
class Staged:
    """A staging run's outcome. ``manifest`` is ``None`` when bad images kept shards out."""

    out: Path
    plan: ShardPlan
    build: BuildResult
    checks: ValidationResult  # what the single pass found in the images, and the validator
    manifest: Manifest | None = None
    verification: ValidationResult = field(default_factory=ValidationResult)

    @property
    def ok(self) -> bool:
        return (self.manifest is not None and self.checks.all_passed
                and self.verification.all_passed)


def stage(rowset: RowSet, out: Path, meta: CardMeta, options: Options, *,
          shard_plan: ShardPlan | None = None, card_source: str | None = None,
          say: Say = log.info) -> Staged:
    """Build (resuming), stage and verify ``out``; it is marked uploadable only if every
    check passed. One run at a time per folder (``StagingLock``)."""
    refuse_out_inside_root(rowset, out)
    with StagingLock(out):
        shard_plan = shard_plan or plan(rowset, out, options)
        try:
            return _stage_locked(rowset, out, meta, options, shard_plan, card_source, say)
        except DiskFullError as err:
            if not err.resumable:
                raise  # the free-space check's refusal: it has the numbers, nothing was written
            # The write that failed knew only its own size: say instead what the rerun needs,
            # the free-space check's figure for the shards not finished yet.
            needed = space_wanted(_bytes_to_write(out, shard_plan)) - free_space(out)
            raise disk_full(out, max(needed, 0)) from err  # 0: freed since, say no figure


def _stage_locked(rowset: RowSet, out: Path, meta: CardMeta, options: Options,
                  shard_plan: ShardPlan, card_source: str | None, say: Say) -> Staged:
    claim(out, meta.slug)
    unmark_verified(out)
    remove_temporary_files(out)
    require_free_space(out, _bytes_to_write(out, shard_plan))  # before anything is written
    save_plan(out, shard_plan)
    validator = in_background(lambda: bids_validator_check(
        rowset.index.root, strict=rowset.schema.strict), "validator") \
        if options.bids_validator else None
    build = build_shards(rowset, shard_plan, out, cpus=options.cpus, full=options.integrity,
                         progress=options.progress)
    changed = changed_since_indexed(rowset)
    if changed:
        raise SourceChangedError(
            f"{len(changed)} source file(s) changed while the dataset was being staged "
            f"(e.g. {shown(changed[0])}); what was staged no longer matches the tree. Rerun "
            "once the data stop changing: shards whose sources are unchanged are reused.",
            resumable=True)
    read = sum(len(build.records[n].sources) for n in build.built)
    say(f"build: {len(build.built)} shard(s) written from {read} images read once (hashed, "
        f"{'inflated in full' if options.integrity else 'header checked'}, scanned, embedded, "
        f"read back); {len(build.reused)} reused (files and sources hashed again)")
    checks = ValidationResult(image_checks(
        rowset, [str(b) for b in build.bad], build.findings, full=options.integrity,
        allow_phi=options.allow_phi))
    if validator is not None:
        checks.add(validator.result())
    staged = Staged(out, shard_plan, build, checks)
    if build.bad or not checks.all_passed:
        # No card, no manifest; shards holding bad images were not kept, and shards whose
        # images may not be published as they are go too.
        _drop_shards_with(out, build, blocking_findings(
            build.findings, rowset.schema.privacy.allow, options.allow_phi))
        return staged
    remove_stale(out, {name for r in build.records.values() for name in r.files})
    staged.manifest = write_card_and_manifest(rowset, shard_plan, out, meta, build.records,
                                              card_source=card_source)
    staged.verification = verify_staged(out, rowset, shard_plan, staged.manifest)
    if staged.ok:
        mark_verified(out)
    return staged


def _drop_shards_with(out: Path, build: BuildResult, findings: list[Finding]) -> None:
    paths = {f.path for f in findings}
    for name, record in list(build.records.items()):
        if paths & set(record.sources):
            for file in record.files:
                (out / file).unlink(missing_ok=True)
            forget_shard(out, name)
            del build.records[name]


def build_only(rowset: RowSet, out: Path, meta: CardMeta, options: Options,
               shard_plan: ShardPlan, only: list[str] | None) -> BuildResult:
    """A job-array task: build some shards of a saved plan, side by side with other tasks
    (they share the folder's lock); the final ``stage`` reuses them."""
    refuse_out_inside_root(rowset, out)
    with StagingLock(out, shared=True):
        claim(out, meta.slug)
        chosen = shard_plan.select(",".join(only) if only else None)
        return build_shards(rowset, shard_plan, out, cpus=options.cpus, only=chosen,
                            full=options.integrity, progress=options.progress)


def save_plan_only(rowset: RowSet, out: Path, meta: CardMeta, shard_plan: ShardPlan) -> None:
    refuse_out_inside_root(rowset, out)
    with StagingLock(out):
        claim(out, meta.slug)
        save_plan(out, shard_plan)


def _bytes_to_write(out: Path, shard_plan: ShardPlan) -> int:
    """Bytes of the shards that have no record of this plan yet (those will be written)."""
    return sum(spec.nbytes for spec in shard_plan.shards
               if (r := read_shard_record(out, spec.name)) is None
               or r.fingerprint != spec.fingerprint)


def _inspect_images(rowset: RowSet, cpus: int, *, full: bool) -> list[ImageReport]:
    """Every claimed, non-empty image read and inspected, without building (empty ones are
    named by the pre-build checks)."""
    root = rowset.index.root
    paths = [p for p in rowset.image_paths()
             if (f := rowset.index.file(p)) is not None and f.size > 0]
    return thread_map(lambda p: inspect_file(root / p, p, full), paths, cpus, "inspect")


# -- look ----------------------------------------------------------------------------------------


def review(rowset: RowSet, options: Options, *, staged: Path | None = None, port: int = 0,
           say: Say = log.info) -> None:
    """Serve the review page of every row until interrupted (``_review``), with what the
    checks found beside the rows they concern. With ``staged``, images come from its shards
    and the image findings from its records (what was verified); else each image's header
    is read (integrity is checked in full when the dataset is staged)."""
    from ._review import run_review
    from ._review_page import ReviewFinding

    findings: list[ReviewFinding] = []
    for c in rowset.checks:
        if not c.passed and c.name != "every NIfTI claimed by a column":
            findings.append(ReviewFinding(None, None, c.severity, c.name, c.details))
    findings += [ReviewFinding(p, None, "error" if rowset.schema.strict else "warning",
                               "coverage", "no column claims this NIfTI; it is not published")
                 for p in rowset.unclaimed]
    image_findings, problems = _image_findings(rowset, options, staged)
    allow = rowset.schema.privacy.allow
    for f in [*published_findings(rowset), *image_findings]:
        severity: Severity = ("info" if not f.published or f.field in allow else
                              "error" if f.blocking and not options.allow_phi else "warning")
        findings.append(ReviewFinding(f.path, None, severity, "privacy", f"{f.where}: {f.what}"))
    findings += [ReviewFinding(path, None, "error", "integrity", problem)
                 for path, problem in problems]
    run_review(rowset, findings, staged=staged, port=port, say=say)


def _image_findings(rowset: RowSet, options: Options, staged: Path | None
                    ) -> tuple[list[Finding], list[tuple[str, str]]]:
    if staged is not None:
        manifest = Manifest.read(staged)
        return [Finding(**f) for s in manifest.shards for f in s.get("findings", [])], []
    reports = _inspect_images(rowset, options.cpus, full=False)
    return ([f for r in reports for f in r.findings],
            [(r.path, r.problem) for r in reports if r.problem])


# -- publish ---------------------------------------------------------------------------------------


@dataclass
class Published:
    result: PublishResult | None  # None: only verified (nothing uploaded)
    remote: ValidationResult


def publish(out: Path, repo_id: str, options: Options, *,
            image_columns: dict[str, bool] | None = None, split: str | None = None,
            say: Say = log.info, warn: Say = log.warning) -> Published:
    """Upload a verified staged folder, then check the Hub copy where it landed. ``warn``
    gets what the maintainer should fix but that does not stop the upload."""
    policy = options.retry_policy()
    card = out / "README.md"
    placeholder = unwritten_prose(card.read_text(encoding="utf-8")) if card.is_file() else None
    if placeholder:
        warn(f"the dataset card still says {placeholder!r} Write what the data are, how they "
             "were acquired and what they are for (push.py: this repo's README.md; Python: "
             "push_to_hub(card=...)), then publish again: only the card is re-sent.")
    if not options.progress:  # huggingface_hub's and hf_xet's bars too
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    with http_timeout(options.http_timeout):
        result = _upload(out, repo_id, private=options.private, revision=options.revision,
                         create_pr=options.create_pr, policy=policy, say=say)
        remote = verify_remote(out, repo_id, revision=result.revision,
                               full=options.verify_remote == "full", policy=policy, say=say)
        if options.check_load and image_columns is not None and split is not None:
            remote.add(check_load(repo_id, split, image_columns, revision=result.revision))
    return Published(result, remote)


def verify_published(out: Path, repo_id: str, options: Options, *, say: Say = log.info
                     ) -> ValidationResult:
    with http_timeout(options.http_timeout):
        return verify_remote(out, repo_id, revision=options.revision,
                             full=options.verify_remote == "full",
                             policy=options.retry_policy(), say=say)


# -- the whole job, for the API and scripts ---------------------------------------------------


def run(root: str | Path, schema: Schema, out: Path, meta: CardMeta, options: Options, *,
        repo_id: str | None = None, card_source: str | None = None,
        say: Say = log.info) -> tuple[Staged, Published | None]:
    """collect -> check -> stage -> (publish): what push.py does, raising instead of exiting.
    Failed checks raise ``ChecksFailed`` naming the files."""
    rowset = collect(root, schema, strict=options.strict)
    result = check(rowset, options)
    if not result.all_passed:
        raise ChecksFailed(f"{len(result.failures)} check(s) failed; nothing was built.", result)
    staged = stage(rowset, out, meta, options, card_source=card_source, say=say)
    if not staged.ok:
        failed = ValidationResult([*staged.checks.failures, *staged.verification.failures])
        raise ChecksFailed(f"The staged folder {out} did not pass; nothing was uploaded.", failed)
    if repo_id is None:
        return staged, None
    published = publish(out, repo_id, options, image_columns=rowset.image_columns,
                        split=rowset.splits[0], say=say)
    if not published.remote.all_passed:
        raise ChecksFailed(f"The Hub copy of {repo_id} does not match {out}.", published.remote)
    return staged, published
