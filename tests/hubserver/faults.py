"""Fault injection (test-only): errors, stalls and broken connections on chosen requests.

Faults are matched against the method and the raw URL path of every request except the admin
API and the server's own internal reads (the Xet bridge, see xet.py); the HTTP plumbing in
server.py applies them before the Hub logic runs.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = ("status", "drop", "delay", "quota")
# The Hub's words when a private storage quota is full (reported by users of huggingface_hub,
# e.g. huggingface/huggingface_hub#3049): a 403 on upload and commit calls.
STORAGE_LIMIT_MESSAGE = ("Private repository storage limit reached, please upgrade your plan "
                         "to increase your private storage limit")


@dataclass
class Fault:
    """A fault applied to the next ``times`` requests matching ``method`` and ``path``.

    ``path`` is a regex searched in the URL path (no query string); ``method=None`` matches
    any method; ``times=None`` applies to every matching request until cleared.

    * "status": answer ``status`` (and ``Retry-After: retry_after`` if set) with ``message``
      as the Hub's error text, skip handling.
    * "quota": a "status" fault of 403 with the Hub's storage-limit message.
    * "drop": reset the connection after ``after_bytes`` bytes of the request body when the
      request has one (an upload), else of the response body (a download). With
      ``on_response=True``, always of the response body: the request was handled (a commit
      landed) but the client never gets the answer, as when a reply is lost in transit.
    * "delay": sleep ``seconds`` first (a stalled route, e.g. ``path=r"/tree/"``); combines
      with the other kinds.
    """

    kind: str
    path: str = ".*"
    method: str | None = None
    times: int | None = 1
    status: int = 503
    retry_after: int | None = None
    message: str | None = None
    after_bytes: int = 0
    on_response: bool = False
    seconds: float = 0.0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.kind == "quota":
            self.kind, self.status = "status", 403
            self.message = self.message or STORAGE_LIMIT_MESSAGE
        re.compile(self.path)
        self.method = self.method.upper() if self.method else None

    def matches(self, method: str, path: str) -> bool:
        return self.method in (None, method) and re.search(self.path, path) is not None

    @property
    def error_message(self) -> str:
        return self.message or f"Injected fault: HTTP {self.status}"


class FaultSet:
    """Thread-safe list of pending faults."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, kind: str, **options: Any) -> Fault:
        """``options``: path, method, times, status, retry_after, message, after_bytes,
        on_response, seconds."""
        fault = Fault(kind, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, method: str, path: str) -> list[Fault]:
        """Consume one use of every fault matching this request."""
        taken = []
        with self._lock:
            for fault in list(self._faults):
                if fault.matches(method, path):
                    fault.hits += 1
                    taken.append(fault)
                    if fault.times is not None and fault.hits >= fault.times:
                        self._faults.remove(fault)
        return taken
