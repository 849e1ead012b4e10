"""The engine both front doors share: push.py's command line and ``from_bids``/``push_to_hub``.

    check(rowset)                   every pre-build check, one ValidationResult
    stage_verified(rowset, ...)     shards + card + manifest, then local verification
    publish_verified(out, repo_id)  upload, then remote verification

Each step returns its ValidationResult; the callers decide how to report (print and an
exit code, or an exception).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._bids_validator import bids_validator_check
from ._card import CardMeta
from ._checks import pre_build_checks
from ._hub import PublishResult, RetryPolicy, mark_verified, publish, verify_remote
from ._plan import ShardPlan
from ._rows import RowSet
from ._stage import Manifest, stage
from ._validate import ValidationResult
from ._verify import verify_staged


class ValidationError(RuntimeError):
    """A step's checks failed; ``result.summary()`` names the files and what to do."""

    def __init__(self, message: str, result: ValidationResult) -> None:
        super().__init__(f"{message}\n{result.summary()}")
        self.result = result


def check(rowset: RowSet, *, integrity: bool = True, num_proc: int = 1, allow_phi: bool = False,
          bids_validator: bool = True) -> ValidationResult:
    """Everything checked before a shard is written (row assembly's findings included)."""
    result = ValidationResult(list(rowset.checks))
    result.extend(pre_build_checks(rowset, integrity=integrity, num_proc=num_proc,
                                   allow_phi=allow_phi))
    if bids_validator:
        result.add(bids_validator_check(rowset.index.root, strict=rowset.schema.strict))
    return result


@dataclass
class Staged:
    out: Path
    plan: ShardPlan
    manifest: Manifest
    verification: ValidationResult


def stage_verified(rowset: RowSet, plan: ShardPlan, out: Path, meta: CardMeta, *,
                   card_source: str | None = None, num_proc: int = 1,
                   progress: bool = True) -> Staged:
    """Build (resuming), stage and verify; the folder is marked uploadable only if it passed."""
    stage(rowset, plan, out, meta, card_source=card_source, num_proc=num_proc,
          progress=progress)
    manifest = Manifest.read(out)
    verification = verify_staged(out, rowset, plan, manifest)
    if verification.all_passed:
        mark_verified(out)
    return Staged(out, plan, manifest, verification)


def publish_verified(out: Path, repo_id: str, *, private: bool = True, revision: str = "main",
                     create_pr: bool = False, full: bool = False,
                     policy: RetryPolicy | None = None,
                     say: Callable[[str], None] = print) -> tuple[PublishResult, ValidationResult]:
    """Upload a verified staged folder, then check the Hub copy where it landed."""
    result = publish(out, repo_id, private=private, revision=revision, create_pr=create_pr,
                     policy=policy, say=say)
    remote = verify_remote(out, repo_id, revision=result.revision, full=full, policy=policy,
                           say=say)
    return result, remote
