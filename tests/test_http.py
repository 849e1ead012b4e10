"""The retry policy of every Hub request, one test per branch: Retry-After, capped backoff,
permanent refusals that say what to do, dropped connections, hf_xet's own refusals, and
messages that never show a signature."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bids_hf._errors import HubError
from bids_hf._http import RetryPolicy, with_retries
from huggingface_hub.errors import HfHubHTTPError


def failing(status: int, headers: dict[str, str] | None = None, times: int = 2,
            message: str = "boom") -> Callable[[], str]:
    """A call that fails ``times`` times with an HTTP ``status``, then returns "done"."""
    import httpx2

    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            response = httpx2.Response(status, headers={"X-Error-Message": message,
                                                        **(headers or {})},
                                       request=httpx2.Request("POST", "http://hub/x"))
            raise HfHubHTTPError(message, response=response)
        return "done"
    return call



@pytest.fixture
def policy() -> tuple[RetryPolicy, list[float], list[str]]:
    slept: list[float] = []
    return RetryPolicy(attempts=4, base_delay=1, max_delay=3, sleep=slept.append), slept, []



def test_retry_429_waits_for_retry_after(policy) -> None:
    retry, slept, said = policy
    assert with_retries("committing", failing(429, {"Retry-After": "7"}), retry,
                        said.append) == "done"
    assert slept == [7.0, 7.0] and "committing: HTTP 429; retrying in 7 s" in said[0]



def test_retry_5xx_backs_off_exponentially_with_a_cap(policy) -> None:
    retry, slept, said = policy
    assert with_retries("x", failing(503, times=3), retry, said.append) == "done"
    assert slept == [1, 2, 3]



def test_retry_401_is_permanent_and_says_what_to_do(policy) -> None:
    retry, slept, said = policy
    with pytest.raises(HubError, match="rejected the token"):
        with_retries("x", failing(401), retry, said.append)
    assert slept == []



def test_retry_403_storage_limit_is_named_as_such(policy) -> None:
    retry, slept, said = policy
    with pytest.raises(HubError, match="storage limit is reached") as err:
        with_retries("committing", failing(403, message="Private repository storage limit "
                                                         "reached, please upgrade"), retry,
                     said.append)
    assert "write access" not in str(err.value) and slept == []



def test_retry_dropped_connections_give_up_with_a_resume_hint(policy) -> None:
    import httpx2

    retry, slept, said = policy
    attempts = {"n": 0}

    def dropped() -> None:
        attempts["n"] += 1
        raise httpx2.RemoteProtocolError("peer closed connection")

    with pytest.raises(HubError, match=r"failed 4 times .*Rerun the same command") as err:
        with_retries("committing", dropped, retry, said.append)
    assert err.value.resumable and attempts["n"] == 4 and slept == [1, 2, 3]



def test_retry_xet_refusal_in_a_connection_error_is_permanent(policy) -> None:
    """hf_xet reports its own HTTP failures as ConnectionError text; a 403 is no network blip."""
    retry, slept, said = policy

    def refused() -> None:
        raise ConnectionError("Network error: HTTP status client error (403 Forbidden) for url "
                              "(http://hub/api/datasets/o/n/xet-write-token/main?sig=SECRET1)")

    with pytest.raises(HubError, match="HTTP 403") as err:
        with_retries("committing", refused, retry, said.append)
    assert slept == [] and "SECRET1" not in str(err.value)



def test_retry_messages_never_show_a_signature(policy) -> None:
    retry, _, said = policy

    def flaky() -> None:
        raise ConnectionError("reset by peer: GET http://cdn/x.parquet?expires=1&sig=SECRET2")

    with pytest.raises(HubError) as err:
        with_retries("downloading", flaky, retry, said.append)
    assert "SECRET2" not in str(err.value) + "".join(said) and "sig=<redacted>" in said[0]



def test_retry_zero_retries_tries_once(policy) -> None:
    _, slept, said = policy
    with pytest.raises(HubError, match="failed once"):
        with_retries("x", failing(503, times=5), RetryPolicy(attempts=1, sleep=slept.append),
                     said.append)
    assert slept == []
