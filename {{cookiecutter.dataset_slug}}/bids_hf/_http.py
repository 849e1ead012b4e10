"""HTTP with the Hub: every request bounded in time, transient failures retried, secrets kept
out of messages.

* huggingface_hub's client has no timeout, and some calls pass ``timeout=None`` explicitly:
  inside ``http_timeout(seconds)``, every request gets one, so a stalled connection is cut
  and retried instead of hanging the run (the previous client comes back afterwards).
* ``with_retries`` retries transient failures (429 with ``Retry-After``, 5xx, timeouts,
  dropped connections) with capped exponential backoff; huggingface_hub retries some calls
  itself, but not the commit or repo creation. Permanent ones (401, 403, 404) become one
  ``HubError`` at once, saying what to do (a full storage quota is named as such).
* Pre-signed URLs in messages lose their signature and token (``redact``).
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import set_client_factory

from ._errors import HubError

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_T = TypeVar("_T")


# -- timeouts ------------------------------------------------------------------------------------


class _BoundedTransport(httpx2.HTTPTransport):
    """Fills in a timeout wherever a request has none. huggingface_hub's client has no
    timeout, and some calls pass ``timeout=None`` explicitly (tree listing, paths-info):
    a stalled connection would hang the run forever instead of being retried."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self._bound = {"connect": min(30.0, seconds), "read": seconds, "write": seconds,
                       "pool": seconds}

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        given = request.extensions.get("timeout") or {}
        bounded = {k: given[k] if given.get(k) is not None else bound
                   for k, bound in self._bound.items()}
        request.extensions = {**request.extensions, "timeout": bounded}
        return super().handle_request(request)


@contextlib.contextmanager
def http_timeout(seconds: float) -> Iterator[None]:
    """Bound every huggingface_hub request made inside the block by ``seconds`` (then give
    the previous client back)."""
    from huggingface_hub.utils import _http

    previous = _http._GLOBAL_CLIENT_FACTORY  # no public getter; restored as it was

    def factory() -> httpx2.Client:
        return httpx2.Client(transport=_BoundedTransport(seconds),
                             event_hooks={"request": [_http.hf_request_event_hook]},
                             follow_redirects=True, timeout=seconds)

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(previous)


# -- retries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 2.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = time.sleep


def with_retries(what: str, call: Callable[[], _T], policy: RetryPolicy,
                 say: Callable[[str], None]) -> _T:
    """Run ``call``; retry transient failures, turn permanent ones into a ``HubError``."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            if status not in TRANSIENT_STATUS:
                raise HubError(_explain(what, status, _server_message(err))) from None
            reason = f"HTTP {status}"
            delay = _retry_after(err.response) or _backoff(attempt, policy)
        except (httpx2.TransportError, ConnectionError, TimeoutError) as err:
            # hf_xet reports HTTP failures of its own requests (token, CAS) as a plain
            # ConnectionError whose text holds the status: a refusal there is not transient.
            text = redact(str(err))
            in_text = _status_in(text)
            if in_text is not None and in_text not in TRANSIENT_STATUS:
                raise HubError(_explain(what, in_text, f": {text[:300]}")) from None
            reason = f"{type(err).__name__}: {text[:160] or 'connection failed'}"
            delay = _backoff(attempt, policy)
        if attempt == policy.attempts:
            tries = "once" if policy.attempts == 1 else f"{policy.attempts} times"
            raise HubError(f"{what} failed {tries} ({reason}). Rerun the same command to "
                           "resume: files that already landed are not sent again.",
                           resumable=True)
        say(f"{what}: {reason}; retrying in {delay:.0f} s "
            f"(attempt {attempt + 1}/{policy.attempts})")
        policy.sleep(delay)
    raise AssertionError("unreachable")


_STATUS_IN_TEXT = re.compile(r"\b(4\d\d|5\d\d) (?:[A-Z][a-z]+|Forbidden|Unauthorized)")
_SIGNED = re.compile(r"([?&](?:sig|signature|X-Amz-Signature|X-Amz-Credential|token|"
                     r"Expires|expires)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    """A message without the secrets of pre-signed URLs (their signature and token)."""
    return _SIGNED.sub(r"\1<redacted>", text)


def _status_in(text: str) -> int | None:
    match = _STATUS_IN_TEXT.search(text)
    return int(match.group(1)) if match else None


def _backoff(attempt: int, policy: RetryPolicy) -> float:
    return min(policy.max_delay, policy.base_delay * 2.0 ** (attempt - 1))


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return min(float(value), 600.0)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, min(600.0, when.timestamp() - time.time()))


_QUOTA = re.compile(r"storage limit|quota|storage.{0,20}(full|exceeded)", re.IGNORECASE)


def _explain(what: str, status: int | None, server: str) -> str:
    server = redact(server)
    if status == 401:
        return (f"{what}: the Hub rejected the token (HTTP 401{server}). Set HF_TOKEN to a "
                "valid token with write access, or log in with `hf auth login`.")
    if status == 403 and _QUOTA.search(server):
        return (f"{what}: the Hub's storage limit is reached (HTTP 403{server}). Free space in "
                "the account or organisation, or upgrade its plan, then rerun the same "
                "command: files that already landed are not sent again.")
    if status == 403:
        return (f"{what}: the token may not write there (HTTP 403{server}). Use a token with "
                "write access to that user or organisation.")
    if status == 404:
        return (f"{what}: not found (HTTP 404{server}). Check the repo id (ORG/NAME), the "
                "--revision, and that the organisation exists and the token belongs to one "
                "of its members.")
    return f"{what}: HTTP {status}{server}."


def _server_message(err: HfHubHTTPError) -> str:
    message = getattr(err, "server_message", None)
    if not message and err.response is not None:  # errors not raised by hf_raise_for_status
        message = err.response.headers.get("X-Error-Message")
    return f": {message}" if message else ""
