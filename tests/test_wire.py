"""The uCaller v1.0 wire: every method, each auth scheme and argument encoding, exact types."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opencaller.config import Settings
from opencaller.domain.clock import FakeClock
from opencaller.wire import methods

from .support import Api, make_api

SUCCESS_PHONE = "79000000001"
FAIL_PHONE = "79000000002"


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- authentication schemes ---------------------------------------------------------------


async def test_query_auth(api: Api) -> None:
    r = await api.client.get(
        "/v1.0/getBalance", params={"service_id": api.service_id, "key": api.key}
    )
    assert r.json()["status"] is True


async def test_json_body_auth_with_string_service_id(api: Api) -> None:
    r = await api.client.post(
        "/v1.0/getBalance", json={"service_id": str(api.service_id), "key": api.key}
    )
    assert r.json()["status"] is True


async def test_form_body_auth(api: Api) -> None:
    r = await api.client.post(
        "/v1.0/getBalance", data={"service_id": str(api.service_id), "key": api.key}
    )
    assert r.json()["status"] is True


async def test_bearer_header_auth(api: Api) -> None:
    r = await api.client.get(
        "/v1.0/getBalance", headers={"Authorization": f"Bearer {api.key}.{api.service_id}"}
    )
    assert r.json()["status"] is True


async def test_header_wins_over_query(api: Api) -> None:
    r = await api.client.get(
        "/v1.0/getBalance",
        params={"service_id": api.service_id, "key": "x" * 32},
        headers={"Authorization": f"Bearer {api.key}.{api.service_id}"},
    )
    assert r.json()["status"] is True


@pytest.mark.parametrize(
    "how",
    ["missing", "wrong_key", "wrong_service", "bad_header", "short_key", "other_service_key"],
)
async def test_auth_failures_answer_401_object(api: Api, how: str) -> None:
    _, other_key, _ = await api.new_service()
    params: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if how == "wrong_key":
        params = {
            "service_id": api.service_id,
            "key": api.key[:-1] + ("A" if api.key[-1] != "A" else "B"),
        }
    elif how == "wrong_service":
        params = {"service_id": 999999, "key": api.key}
    elif how == "bad_header":
        headers = {"Authorization": f"Bearer {api.key}"}
    elif how == "short_key":
        params = {"service_id": api.service_id, "key": api.key[:10]}
    elif how == "other_service_key":
        params = {"service_id": api.service_id, "key": other_key}
    r = await api.client.get("/v1.0/getBalance", params=params, headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {
        "status": False,
        "error": "Authentication failed. Make sure you are using the correct authentication "
        "scheme. (https://developer.ucaller.ru/)",
        "code": 401,
    }


# -- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/getBalance",
        "/v1.0/getBalance/",
        "/getBalance",
        "/getBalance/",
        "//v1.0//getBalance",
        "/v1.0/getbalance",
    ],
)
async def test_path_variants_reach_the_method_without_redirect(api: Api, path: str) -> None:
    r = await api.client.get(path, params=api.creds, follow_redirects=False)
    assert r.status_code == 200
    assert r.json()["status"] is True
    assert "rub_balance" in r.json()


@pytest.mark.parametrize("path", ["/health", "//health", "/v1.0/health", "/health/"])
async def test_health_without_auth(api: Api, path: str) -> None:
    # A full URL, as PY01 builds it (base "https://host/" + "/health" gives "//health").
    r = await api.client.get(f"http://opencaller.test{path}")
    assert r.json() == {"status": True, "database": True, "providers": True}


@pytest.mark.parametrize("path", ["/v1.0/sendSms", "/", "/v1.0/", "/v1.0/getInfo/extra"])
async def test_unknown_method_is_405(api: Api, path: str) -> None:
    r = await api.client.get(path, params=api.creds)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] is False and body["code"] == 405
    assert isinstance(body["error"], str) and body["error"]


async def test_other_http_verbs_are_405(api: Api) -> None:
    r = await api.client.delete("/v1.0/getBalance", params=api.creds)
    assert r.json()["code"] == 405


@pytest.mark.parametrize("verb", ["TRACE", "QUERY", "PROPFIND"])
@pytest.mark.parametrize("path", ["/", "/v1.0/sendSms", "/v1.0/getBalance"])
async def test_unusual_verbs_get_the_405_object(api: Api, verb: str, path: str) -> None:
    r = await api.client.request(verb, path, params=api.creds)
    assert r.status_code == 200
    assert r.json()["code"] == 405
    health = await api.client.request(verb, "/health")  # not a health check either
    assert health.status_code == 200 and health.json()["code"] == 405


# -- initCall -----------------------------------------------------------------------------


def assert_init_call_shape(body: dict[str, Any]) -> None:
    assert body["status"] is True
    assert "error" not in body
    assert is_int(body["ucaller_id"])
    assert isinstance(body["phone"], str)
    assert isinstance(body["code"], str) and len(body["code"]) == 4 and body["code"].isdigit()
    assert isinstance(body["client"], str)


async def test_init_call_query(api: Api) -> None:
    body = await api.get("initCall", phone=SUCCESS_PHONE, code="0427", client="nick")
    assert_init_call_shape(body)
    assert body["phone"] == "7900***0001"
    assert body["code"] == "0427"
    assert body["client"] == "nick"
    assert "unique_request_id" not in body and "exists" not in body


async def test_init_call_json_number_phone_and_int_code(api: Api) -> None:
    body = await api.post_json("initCall", {"phone": 79000000001, "code": 7})
    assert_init_call_shape(body)
    assert body["code"] == "0007"  # leading zeros restored (a Go client sends code=7)


async def test_init_call_form_with_voice_1(api: Api) -> None:
    r = await api.client.post(
        "/v1.0/initCall",
        data={"phone": "+7 (900) 000-00-01", "code": "1234", "voice": "1", "client": "c"},
        headers={"Authorization": f"Bearer {api.key}.{api.service_id}"},
    )
    body = r.json()
    assert_init_call_shape(body)
    info = await api.get("getInfo", uid=body["ucaller_id"])
    assert info["code"] == "1234"


async def test_init_call_plus_encoded_in_query(api: Api) -> None:
    # PY01 sends phone=%2B7..., and a raw '+' decodes to a space; both must work.
    r = await api.client.get(
        f"/v1.0/initCall/?phone=%2B79000000001&service_id={api.service_id}&key={api.key}"
    )
    assert r.json()["phone"] == "7900***0001"
    r = await api.client.get(
        f"/v1.0/initCall?phone=+79000000002&service_id={api.service_id}&key={api.key}"
    )
    assert r.json()["phone"] == "7900***0002"


async def test_init_call_generates_code_when_absent(api: Api) -> None:
    body = await api.get("initCall", phone=SUCCESS_PHONE)
    assert_init_call_shape(body)


@pytest.mark.parametrize("flag", ["true", "True", "1", "on"])
async def test_voice_flag_spellings_store_a_voice_call(api: Api, flag: str) -> None:
    body = await api.get("initCall", phone=SUCCESS_PHONE, voice=flag)
    async with api.rt.db.read() as conn:
        from sqlalchemy import select

        from opencaller.storage.tables import authorizations

        kind = (
            await conn.execute(
                select(authorizations.c.kind).where(authorizations.c.id == body["ucaller_id"])
            )
        ).scalar()
    assert kind == "voice"


async def test_mix_json_true_is_stored(api: Api) -> None:
    body = await api.post_json("initCall", {"phone": SUCCESS_PHONE, "mix": True})
    info = await api.wait_final(body["ucaller_id"])
    assert info["call_status"] == 1
    async with api.rt.db.read() as conn:
        from sqlalchemy import select

        from opencaller.storage.tables import authorizations

        kind = (
            await conn.execute(
                select(authorizations.c.kind).where(authorizations.c.id == body["ucaller_id"])
            )
        ).scalar()
    assert kind == "mix"


async def test_init_call_unique_echo_and_exists_flag(api: Api) -> None:
    first = await api.get("initCall", phone=SUCCESS_PHONE, unique="f32d7ab0-2695-44ee-a20c")
    assert first["unique_request_id"] == "f32d7ab0-2695-44ee-a20c"
    assert first["exists"] is False
    again = await api.get("initCall", phone=SUCCESS_PHONE, unique="f32d7ab0-2695-44ee-a20c")
    assert again["exists"] is True
    assert again["ucaller_id"] == first["ucaller_id"]
    assert again["code"] == first["code"]


# -- outcomes -----------------------------------------------------------------------------


async def test_test_numbers_reach_final_status_and_cost_nothing(api: Api) -> None:
    ok = await api.get("initCall", phone=SUCCESS_PHONE)
    bad = await api.get("initCall", phone=FAIL_PHONE)
    assert ok["status"] is True and bad["status"] is True
    info_ok = await api.wait_final(ok["ucaller_id"])
    info_bad = await api.wait_final(bad["ucaller_id"])
    assert info_ok["call_status"] == 1
    assert info_bad["call_status"] == 0
    assert info_ok["cost"] == 0 and info_bad["cost"] == 0
    assert info_ok["is_test"] is True
    balance = await api.get("getBalance")
    assert balance["rub_balance"] == 100


async def test_init_call_returns_pending_at_once(api: Api) -> None:
    body = await api.get("initCall", phone="79161234567")
    info = await api.get("getInfo", uid=body["ucaller_id"])
    assert info["call_status"] == -1
    final = await api.wait_final(body["ucaller_id"])
    assert final["call_status"] == 1
    assert final["cost"] == 0.3
    assert final["call_outcome"] == "delivered"


# -- getInfo ------------------------------------------------------------------------------


async def test_get_info_types(api: Api) -> None:
    body = await api.get("initCall", phone="79161234567", client="nick", unique="u-1")
    info = await api.wait_final(body["ucaller_id"])
    assert info["status"] is True
    for name in ("ucaller_id", "init_time", "call_status", "repeat_times"):
        assert is_int(info[name]), name
    for name in ("is_repeated", "repeatable"):
        assert isinstance(info[name], bool), name
    assert info["repeated_ucaller_ids"] == []
    assert info["unique"] == "u-1"
    assert info["client"] == "nick"
    assert info["phone"] == "7916***4567"
    assert isinstance(info["code"], str) and len(info["code"]) == 4
    assert info["country_code"] == "RU"
    assert info["country_image"].endswith("/ru.svg")
    assert isinstance(info["phone_info"], list)
    assert is_number(info["cost"]) and is_number(info["balance"])
    assert info["balance"] == 100  # balance before this authorization was charged
    assert "first_ucaller_id" not in info
    assert info["repeatable"] is True and info["repeat_times"] == 2


@pytest.mark.parametrize("name", ["uid", "ucaller_id"])
async def test_get_info_accepts_uid_and_ucaller_id(api: Api, name: str) -> None:
    body = await api.get("initCall", phone=SUCCESS_PHONE)
    info = await api.get("getInfo", **{name: body["ucaller_id"]})
    assert info["ucaller_id"] == body["ucaller_id"]


async def test_get_info_with_json_body_on_get(api: Api) -> None:
    body = await api.get("initCall", phone=SUCCESS_PHONE)
    r = await api.client.request(
        "GET",
        "/v1.0/getInfo",
        content=json.dumps({"uid": body["ucaller_id"]}),
        headers={
            "Authorization": f"Bearer {api.key}.{api.service_id}",
            "Content-Type": "application/json",
        },
    )
    assert r.json()["ucaller_id"] == body["ucaller_id"]


async def test_get_info_error_10_for_unknown_and_foreign_ids(api: Api) -> None:
    assert (await api.get("getInfo", uid=987654))["code"] == 10
    other_sid, other_key, _ = await api.new_service()
    r = await api.client.get(
        "/v1.0/initCall", params={"service_id": other_sid, "key": other_key, "phone": SUCCESS_PHONE}
    )
    foreign = r.json()["ucaller_id"]
    body = await api.get("getInfo", uid=foreign)
    assert body == {"status": False, "error": body["error"], "code": 10}


# -- initRepeat ---------------------------------------------------------------------------


async def test_init_repeat_links_a_new_id(api: Api) -> None:
    first = await api.get("initCall", phone=FAIL_PHONE, code="4321", client="c1")
    await api.wait_final(first["ucaller_id"])
    rep = await api.post_json("initRepeat", {"uid": first["ucaller_id"]})
    assert rep["status"] is True and rep["free_repeated"] is True
    assert rep["ucaller_id"] != first["ucaller_id"]
    assert rep["code"] == "4321" and rep["phone"] == "7900***0002" and rep["client"] == "c1"
    info = await api.wait_final(rep["ucaller_id"])
    assert info["is_repeated"] is True
    assert info["first_ucaller_id"] == first["ucaller_id"]
    root = await api.get("getInfo", uid=first["ucaller_id"])
    assert root["repeated_ucaller_ids"] == [rep["ucaller_id"]]
    assert root["repeat_times"] == 1


# -- getBalance / getService / getAccount / checkPhone / inboundCallWaiting ---------------


async def test_get_balance_shape(api: Api) -> None:
    body = await api.get("getBalance")
    assert body == {
        "status": True,
        "rub_balance": 100,
        "bonus_balance": 0,
        "tariff": "uni",
        "tariff_name": "Единый",
    }


async def test_get_service_shape(api: Api) -> None:
    body = await api.get("getService")
    assert body["status"] is True
    assert body["service_status"] == 1
    assert body["name"] == "Test service"
    assert is_int(body["creation_time"]) and is_int(body["last_request"])
    assert isinstance(body["owner"], str) and "@" in body["owner"]
    assert body["use_direction"] == "tests"
    assert body["now_test"] is False
    assert is_int(body["test_info"]["test_requests"])
    assert is_int(body["test_info"]["verified_phone"])


async def test_get_account_shape(api: Api) -> None:
    body = await api.get("getAccount")
    assert body["status"] is True
    assert body["id"] == api.account_id
    assert is_int(body["telegram_id"])
    assert isinstance(body["two_auth"], bool)
    assert isinstance(body["email"], str)
    assert isinstance(body["logs"], list)
    assert is_int(body["created"]) and is_int(body["updated"])


async def test_check_phone_shape(api: Api) -> None:
    body = await api.get("checkPhone", phone="+7 909 100-00-00")
    assert body["status"] is True
    assert body["source"] == "+7 909 100-00-00"
    assert body["phone"] == 79091000000 and is_int(body["phone"])
    assert body["mobile"] == 1
    assert body["country_iso"] == "RU" and body["country_code"] == 7
    assert body["number"] == 9091000000
    assert is_number(body["cost"]) and is_number(body["balance"])
    for name in ("provider", "company", "country", "region", "city", "phone_format"):
        assert isinstance(body[name], str), name


async def test_inbound_call_waiting_shape(api: Api) -> None:
    body = await api.get(
        "inboundCallWaiting", phone="+79161234567", callback_url="https://example.com/hook"
    )
    assert body["status"] is True
    assert is_int(body["ucaller_id"])
    assert body["phone"] == "7916***4567"
    assert isinstance(body["confirmation_number"], str)
    assert body["confirmation_number"].isdigit()


# -- errors -------------------------------------------------------------------------------


async def test_error_1_for_a_broken_json_body(api: Api) -> None:
    r = await api.client.post(
        "/v1.0/initCall",
        content=b'{"phone": 7900',
        headers={
            "Authorization": f"Bearer {api.key}.{api.service_id}",
            "Content-Type": "application/json",
        },
    )
    assert r.json()["code"] == 1 and r.json()["status"] is False


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"phone": SUCCESS_PHONE, "code": "12345"},
        {"phone": SUCCESS_PHONE, "code": "12a"},
        {"phone": SUCCESS_PHONE, "client": "x" * 65},
        {"phone": SUCCESS_PHONE, "unique": "u" * 65},
        {"phone": SUCCESS_PHONE, "voice": "maybe"},
    ],
)
async def test_error_2_for_missing_or_malformed_parameters(
    api: Api, params: dict[str, Any]
) -> None:
    body = await api.get("initCall", **params)
    assert body["status"] is False and body["code"] == 2
    assert isinstance(body["error"], str)


async def test_error_2_for_get_info_without_uid(api: Api) -> None:
    assert (await api.get("getInfo"))["code"] == 2
    assert (await api.get("getInfo", uid="abc"))["code"] == 2


@pytest.mark.parametrize("phone", ["abc", "123", "7900", "+1 000 000", "999999999999999999"])
async def test_error_3_for_invalid_phone(api: Api, phone: str) -> None:
    body = await api.get("initCall", phone=phone)
    assert body["status"] is False and body["code"] == 3


async def test_error_3_for_a_test_range_number_longer_than_e164(
    settings: Settings, clock: FakeClock
) -> None:
    settings.test_ranges = ["7900"]
    async with make_api(settings, clock) as api:
        for method, extra in (
            ("initCall", {}),
            ("inboundCallWaiting", {"callback_url": "https://example.com/hook"}),
        ):
            body = await api.get(method, phone="7900" + "1" * 21, **extra)
            assert body["status"] is False and body["code"] == 3, (method, body)
        assert (await api.get("initCall", phone="790012345678"))["status"] is True


async def test_error_500_is_the_error_object(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: Any) -> dict[str, Any]:
        raise RuntimeError("database exploded")

    monkeypatch.setitem(methods.METHODS, "getbalance", broken)
    r = await api.client.get("/v1.0/getBalance", params=api.creds)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] is False and body["code"] == 500
    assert "exploded" not in body["error"]
