"""The models against uCaller's own documented answers (tests/data/ucaller/*.json).

These are the examples the uCaller documentation gives (collected in the wire spec), served
by an ``httpx.MockTransport``; they prove the client reads uCaller's shapes, not only ours.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencaller.client import AsyncClient, AuthError, Client, RepeatError
from opencaller.client.webhooks import parse_inbound_call

DATA = Path(__file__).resolve().parents[1] / "data" / "ucaller"


def recorded(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    assert doc["documented_example"]
    return doc


def serving(name: str) -> Callable[[httpx.Request], httpx.Response]:
    doc = recorded(name)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == doc["path"]
        return httpx.Response(200, json=doc["response"])

    return handler


@pytest.fixture
def ucaller() -> Iterator[Callable[[str], Client]]:
    opened: list[httpx.Client] = []

    def make(name: str) -> Client:
        http = httpx.Client(transport=httpx.MockTransport(serving(name)))
        opened.append(http)
        return Client(1692, "k" * 32, http=http)

    yield make
    for http in opened:
        http.close()


def test_init_call(ucaller: Callable[[str], Client]) -> None:
    call = ucaller("init_call").init_call(
        "79001231010", unique="f32d7ab0-2695-44ee-a20c-a34262a06b90"
    )
    assert call.ucaller_id == 103000
    assert call.phone == "7900***1010"
    assert call.code == "1000"
    assert call.exists is True


def test_init_call_with_old_numeric_phone_and_code(ucaller: Callable[[str], Client]) -> None:
    call = ucaller("init_call_old").init_call("79991234567")
    assert call.phone == "79991234567"
    assert call.code == "7777"
    assert call.unique_request_id is None and call.exists is None


def test_init_repeat(ucaller: Callable[[str], Client]) -> None:
    repeat = ucaller("init_repeat").init_repeat(103000)
    assert repeat.ucaller_id == 103001
    assert repeat.free_repeated is True


def test_get_info_with_deprecated_fields(ucaller: Callable[[str], Client]) -> None:
    info = ucaller("get_info").get_info(103000)
    assert info.pending and info.call_status == -1
    assert info.code == "0010"
    assert info.repeated_ucaller_ids == [103001, 103002]
    assert info.first_ucaller_id == 102999
    assert info.phone_info[0].operator == "МТС"
    assert info.phone_info[0].mnp == "Мегафон"
    assert info.cost == 0.3 and info.balance == 568.12
    assert info.country_image is None  # the newer docs dropped it
    assert info.raw["unique"] == "f32d7ab0-2695-44ee-a20c-a34262a06b90"


@pytest.mark.parametrize("name", ["get_balance", "get_balance_new"])
def test_get_balance(ucaller: Callable[[str], Client], name: str) -> None:
    balance = ucaller(name).get_balance()
    assert balance.rub_balance == 84.6
    assert isinstance(balance.rub_balance, float)
    assert balance.bonus_balance == (0.0 if name == "get_balance" else None)


def test_get_service_old_shape(ucaller: Callable[[str], Client]) -> None:
    service = ucaller("get_service").get_service()
    assert service.service_status == 1692
    assert service.now_test is True
    assert service.test_info is not None
    assert service.test_info.test_requests == 89
    assert service.test_info.verified_phone == "79991234567"


def test_get_service_new_shape(ucaller: Callable[[str], Client]) -> None:
    service = ucaller("get_service_new").get_service()
    assert service.name == "PhoneConfirm"
    assert service.now_test is None and service.test_info is None


def test_get_account_without_status(ucaller: Callable[[str], Client]) -> None:
    account = ucaller("get_account").get_account()
    assert account.status is None
    assert account.telegram_id == 123456789
    assert account.logs[0].action == "смена пароля"
    assert account.logs[0].created == 1636552838


def test_check_phone_without_status_keeps_the_inline_error(
    ucaller: Callable[[str], Client],
) -> None:
    found = ucaller("check_phone").check_phone("+7 909 100-00-00")
    assert found.status is None
    assert found.error == "Invalid phone number"
    assert found.phone == "79091000000"
    assert found.number == "9091000000"
    assert found.mnc == 99 and found.cost == 0.04


def test_inbound_call_waiting(ucaller: Callable[[str], Client]) -> None:
    waiting = ucaller("inbound_call_waiting").inbound_call_waiting("79001231010", "https://x.y/")
    assert waiting.confirmation_number == "79001000011"


def test_health(ucaller: Callable[[str], Client]) -> None:
    health = ucaller("health").health()
    assert (health.status, health.database, health.providers) == (True, True, True)


def test_auth_error_object(ucaller: Callable[[str], Client]) -> None:
    with pytest.raises(AuthError) as e:
        ucaller("error_auth").get_balance()
    assert e.value.code == 401


def test_error_code_sent_as_string(ucaller: Callable[[str], Client]) -> None:
    with pytest.raises(RepeatError) as e:
        ucaller("error_code_string").init_repeat(103000)
    assert e.value.code == 13
    assert e.value.message == "This uCaller ID is already repeated"


async def test_async_client_reads_the_same_shapes() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(serving("get_info")))
    async with http, AsyncClient(1692, "k" * 32, http=http) as api:
        info = await api.get_info(103000)
    assert info.code == "0010" and info.phone_info[0].region == "Республика Татарстан"


def test_webhook_body() -> None:
    body = recorded("inbound_webhook")["body"]
    call = parse_inbound_call(json.dumps(body).encode())
    assert call.call_id == "10300"
    assert call.client_number == "79001000010"
    assert call.confirmation_number == "79001000011"
    assert call.is_mnp is True
    assert call.operator_name_mnp == "ВымпелКом ПАО"
    assert call.region_name == "Пермский край"
    assert call.callback_link == "https://example.com/callback"


def test_requests_go_to_ucaller_with_bearer_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=recorded("get_info")["response"])

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        Client(1692, "k" * 32, http=http).get_info(103000)
    (request,) = seen
    assert str(request.url) == "https://api.ucaller.ru/v1.0/getInfo?uid=103000"
    assert request.method == "GET"
    assert request.headers["authorization"] == f"Bearer {'k' * 32}.1692"
