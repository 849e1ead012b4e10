"""One exception family: every failure the package foresees, with a category and an exit code.

Every exception raised on purpose derives from ``BidsHfError``. Its *category* says whose move
it is, and maps to push.py's exit code in one table (``EXIT_CODES``):

=============  ====  ==========================================================================
category       exit  meaning
=============  ====  ==========================================================================
``checks``     1     the data were checked and something is wrong with them (files named)
``input``      2     bad input or usage: schema.py, a table, a flag, the BIDS root
``hub``        3     the Hub refused or kept failing (token, rights, quota, network)
``environment`` 4    this machine: disk full, staging folder locked, a package missing
``bug``        70    none of the above: a traceback to report
=============  ====  ==========================================================================

``resumable`` is true only where rerunning the same command picks up where the run stopped,
so a message never promises a resume that will not happen.
"""

from __future__ import annotations

from typing import ClassVar, Literal

Category = Literal["checks", "input", "hub", "environment", "bug"]

EXIT_OK = 0
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_CODES: dict[Category, int] = {"checks": 1, "input": 2, "hub": 3, "environment": 4,
                                   "bug": 70}


class BidsHfError(Exception):
    """Base of every error bids_hf raises on purpose; the message says what to do."""

    category: ClassVar[Category] = "bug"

    def __init__(self, message: str, *, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.category]

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in worker processes and re-raised here: keep the subclass and its fields
        # (default pickling would call __init__ with the message only).
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[BidsHfError], args: tuple[object, ...],
             state: dict[str, object]) -> BidsHfError:
    err = Exception.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class InputError(BidsHfError):
    """Bad input or usage: fix schema.py, a table, a flag or the tree, then rerun."""

    category = "input"


class ChecksFailed(BidsHfError):
    """Checks ran and some failed; ``result.summary()`` names the files and what to do."""

    category = "checks"

    def __init__(self, message: str, result: object, *, resumable: bool = False) -> None:
        summary = getattr(result, "summary", None)
        super().__init__(f"{message}\n{summary()}" if callable(summary) else message,
                         resumable=resumable)
        self.result = result


class HubError(BidsHfError):
    """Publishing failed; the message says why and what to do (never the token)."""

    category = "hub"


class ResourceError(BidsHfError):
    """This machine stands in the way: disk space, a lock, a missing package."""

    category = "environment"


class DiskFullError(ResourceError):
    """Writing under the staging folder ran out of space; nothing half-written was kept."""


class StagingLockedError(ResourceError):
    """Another run holds the staging folder."""


class SourceChangedError(InputError):
    """A source file changed while it was being published; rerun once the data stop changing."""
