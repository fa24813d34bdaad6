"""The sync and async clients against a real opencaller server (see conftest.live)."""

from __future__ import annotations

import re
import uuid

import pytest

from opencaller.client import (
    AsyncClient,
    AuthError,
    Client,
    GetInfo,
    NotFoundError,
    RepeatError,
    ValidationError,
)

from .conftest import Live

SUCCESS_PHONE = "79000000001"
FAIL_PHONE = "79000000002"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_call_to_the_success_number_is_reached(client: Client) -> None:
    call = client.init_call("+7 (900) 000-00-01", client="alice")
    assert call.phone == "7900***0001"
    assert re.fullmatch(r"\d{4}", call.code)
    assert call.client == "alice"
    # No key given: the client made one, so the call may be retried safely.
    assert call.unique_request_id is not None and UUID4.match(call.unique_request_id)
    assert call.exists is False

    seen: list[GetInfo] = []
    info = client.wait(call.ucaller_id, interval=0.05, max_wait=20, on_update=seen.append)
    assert info.call_status == 1 and info.reached and not info.pending
    assert seen and seen[-1] == info
    assert info.ucaller_id == call.ucaller_id
    assert info.code == call.code
    assert info.unique == call.unique_request_id
    assert info.country_code == "RU"
    assert isinstance(info.cost, float) and isinstance(info.balance, float)
    assert isinstance(info.phone_info, list)


async def test_async_call_to_the_failing_number_is_not_reached(aclient: AsyncClient) -> None:
    call = await aclient.init_call(FAIL_PHONE, code=7)
    assert call.code == "0007"
    info = await aclient.wait(call.ucaller_id, interval=0.05, max_wait=20)
    assert info.call_status == 0
    assert not info.reached and not info.pending


def test_repeat_chain_until_the_limit(client: Client) -> None:
    first = client.init_call(FAIL_PHONE, code="4321")
    client.wait(first.ucaller_id, interval=0.05, max_wait=20)

    one = client.init_repeat(first.ucaller_id)
    assert one.free_repeated is True
    assert one.ucaller_id != first.ucaller_id
    assert one.code == "4321"
    client.wait(one.ucaller_id, interval=0.05, max_wait=20)
    two = client.init_repeat(first.ucaller_id)
    client.wait(two.ucaller_id, interval=0.05, max_wait=20)

    with pytest.raises(RepeatError) as caught:
        client.init_repeat(first.ucaller_id)
    assert caught.value.code == 12

    root = client.get_info(first.ucaller_id)
    assert root.repeated_ucaller_ids == [one.ucaller_id, two.ucaller_id]
    assert root.repeatable is False
    repeat = client.get_info(two.ucaller_id)
    assert repeat.is_repeated is True
    assert repeat.first_ucaller_id == first.ucaller_id


def test_same_unique_key_returns_the_same_call(client: Client) -> None:
    key = str(uuid.uuid4())
    first = client.init_call(SUCCESS_PHONE, unique=key)
    again = client.init_call(SUCCESS_PHONE, unique=key)
    assert first.exists is False
    assert again.exists is True
    assert again.ucaller_id == first.ucaller_id
    assert again.unique_request_id == key


def test_account_methods(client: Client) -> None:
    balance = client.get_balance()
    assert isinstance(balance.rub_balance, float) and balance.rub_balance > 0
    assert balance.tariff

    service = client.get_service()
    assert service.name == "Demo"
    assert isinstance(service.creation_time, int)
    assert service.test_info is not None

    account = client.get_account()
    assert account.email == "demo@opencaller.local"
    assert all(isinstance(log.created, int) for log in account.logs)

    assert client.health().status is True


async def test_async_lookup_and_inbound(aclient: AsyncClient) -> None:
    found = await aclient.check_phone("+7 916 123-45-67")
    assert found.phone == "79161234567"
    assert found.source == "+7 916 123-45-67"
    assert found.country_iso == "RU" and found.country_code == 7
    assert found.error is None

    waiting = await aclient.inbound_call_waiting("79161234567", "https://example.com/hook")
    assert waiting.phone == "7916***4567"
    assert waiting.confirmation_number.isdigit()

    assert (await aclient.get_balance()).rub_balance > 0


def test_wrong_key_is_an_auth_error(live: Live) -> None:
    with Client(live.service_id, "x" * 32, base_url=live.url) as bad, pytest.raises(AuthError) as e:
        bad.get_balance()
    assert e.value.code == 401
    assert e.value.message.startswith("Authentication failed")


async def test_async_wrong_key_is_an_auth_error(live: Live) -> None:
    async with AsyncClient(live.service_id, "y" * 32, base_url=live.url + "/v1.0/") as bad:
        with pytest.raises(AuthError):
            await bad.get_service()


def test_unknown_uid_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError) as e:
        client.get_info(987654321)
    assert e.value.code == 10


@pytest.mark.parametrize("phone", ["not a phone", "123"])
async def test_bad_phone_is_a_validation_error(aclient: AsyncClient, phone: str) -> None:
    with pytest.raises(ValidationError) as e:
        await aclient.check_phone(phone)
    assert e.value.code == 3


def test_init_call_to_a_non_number_is_a_validation_error(client: Client) -> None:
    with pytest.raises(ValidationError) as e:
        client.init_call("call me maybe")
    assert e.value.code == 3
    assert e.value.message == "Invalid phone number"
