"""Retries: what is sent again, how often, and that a call is never placed twice by accident."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from opencaller.client import (
    AsyncClient,
    Client,
    LimitError,
    RetryPolicy,
    ServerError,
    UcallerAPIError,
)
from opencaller.client._core import retry_after

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)
BALANCE = {"status": True, "rub_balance": 10.5, "tariff": "uni", "tariff_name": "Единый"}
CALL = {"status": True, "ucaller_id": 7, "phone": "7900***0001", "code": "1234", "client": ""}
TOO_MANY = {"status": False, "error": "Too many requests per second", "code": 429}


class Script:
    """A fake uCaller answering from a list, recording every request it got."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, retry: RetryPolicy = FAST, *, auto_unique: bool = True) -> Client:
        http = httpx.Client(transport=httpx.MockTransport(self))
        return Client(1, "k" * 32, http=http, retry=retry, auto_unique=auto_unique)


def limited(after: str = "0") -> httpx.Response:
    return httpx.Response(200, json=TOO_MANY, headers={"Retry-After": after})


def test_429_with_retry_after_then_success() -> None:
    script = Script(limited("0"), httpx.Response(200, json=BALANCE))
    assert script.client(retry=FAST).get_balance().rub_balance == 10.5
    assert len(script.requests) == 2


async def test_async_429_then_success() -> None:
    script = Script(limited("0"), limited("0"), httpx.Response(200, json=BALANCE))
    async with AsyncClient(
        1, "k" * 32, retry=FAST, http=httpx.AsyncClient(transport=httpx.MockTransport(script))
    ) as api:
        assert (await api.get_balance()).tariff == "uni"
    assert len(script.requests) == 3


def test_gives_up_after_the_attempts_and_reports_retry_after() -> None:
    script = Script(limited("0"))
    with pytest.raises(LimitError) as e:
        script.client(retry=FAST).get_balance()
    assert len(script.requests) == FAST.attempts
    assert e.value.code == 429 and e.value.retry_after == 0


def test_a_retry_after_longer_than_allowed_goes_to_the_caller() -> None:
    script = Script(limited("120"), httpx.Response(200, json=BALANCE))
    with pytest.raises(LimitError) as e:
        script.client(retry=FAST).get_balance()
    assert e.value.retry_after == 120
    assert len(script.requests) == 1


def test_per_number_limits_are_not_retried() -> None:
    script = Script(httpx.Response(200, json={"status": False, "error": "limit", "code": 18}))
    with pytest.raises(LimitError) as e:
        script.client(retry=FAST).get_balance()
    assert e.value.code == 18
    assert len(script.requests) == 1


def test_init_call_without_unique_is_never_sent_twice() -> None:
    script = Script(
        httpx.Response(502, text="<html>Bad Gateway</html>"), httpx.Response(200, json=CALL)
    )
    with pytest.raises(ServerError) as e:
        script.client(retry=FAST, auto_unique=False).init_call("79000000001")
    assert e.value.http_status == 502
    assert len(script.requests) == 1
    assert "unique" not in script.requests[0].url.params


def test_init_call_with_generated_unique_is_retried_with_the_same_key() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json=CALL))
    call = script.client(retry=FAST).init_call("79000000001")
    assert call.ucaller_id == 7
    first, second = script.requests
    key = first.url.params["unique"]
    assert len(key) == 36
    assert second.url.params["unique"] == key


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.init_repeat(7),
        lambda c: c.check_phone("79000000001"),
        lambda c: c.inbound_call_waiting("79000000001", "https://x.y/"),
    ],
)
def test_methods_that_could_act_twice_are_not_retried(send: Callable[[Client], object]) -> None:
    script = Script(httpx.Response(500, json={"status": False, "error": "boom", "code": 500}))
    with pytest.raises(ServerError):
        send(script.client(retry=FAST))
    assert len(script.requests) == 1


def test_transport_failures_become_server_errors_after_retries() -> None:
    script = Script(httpx.ConnectError("connection refused"))
    with pytest.raises(ServerError) as e:
        script.client(retry=FAST).get_info(1)
    assert "connection refused" in e.value.message
    assert e.value.http_status is None
    assert len(script.requests) == FAST.attempts


def test_a_non_json_answer_is_not_a_success() -> None:
    script = Script(httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(UcallerAPIError) as e:
        script.client(retry=FAST).get_balance()
    assert "not a uCaller answer" in e.value.message
    assert len(script.requests) == 1


def test_backoff_grows_and_stays_within_its_step() -> None:
    policy = RetryPolicy(attempts=5, backoff=1.0, max_backoff=3.0)
    err = ServerError(500, "boom")
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]:
        delay = policy.delay(attempt, err)
        assert delay is not None and step / 2 <= delay <= step
    assert policy.delay(5, err) is None


def test_retry_after_header_forms() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
