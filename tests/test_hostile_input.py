"""Hostile input: what an anonymous client can send gets an ordinary uCaller error, never a
500 or a traceback, and one phone number has one spelling, so no per-number limit is dodged."""

from __future__ import annotations

import dataclasses
import logging
import socket
import sys
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from typer.testing import CliRunner

from opencaller.cli.main import app as cli
from opencaller.config import Settings, SimulatorSettings
from opencaller.domain.clock import FakeClock
from opencaller.domain.settings import ServiceSettings
from opencaller.numbering.mnp import parse_mnp_text
from opencaller.numbering.registry import RegistryFormatError
from opencaller.storage.tables import authorizations

from .conftest import REDIS_URL
from .dashboard_support import new_page
from .live import LiveServer, start_server
from .support import Api, add_customer, make_api

BILLED_PHONE = "79161234567"  # a real-looking number: the simulator answers, the call is billed
TEST_PHONE = "79000000001"  # a configured test number: free


def digit_scripts() -> list[str]:
    """The ten digits of every decimal script Unicode knows (category Nd, found by its
    zero; the nine digits after a zero are always its 1-9), ASCII first."""
    zeros = [
        chr(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) == "Nd" and unicodedata.digit(chr(cp)) == 0
    ]
    scripts = []
    for zero in zeros:
        ten = "".join(chr(ord(zero) + d) for d in range(10))
        assert [unicodedata.digit(c) for c in ten] == list(range(10)), unicodedata.name(zero)
        scripts.append(ten)
    return scripts


SCRIPTS = digit_scripts()
FOREIGN = [s for s in SCRIPTS if s != "0123456789"]


def spell(number: str, ten: str) -> str:
    return "".join(ten[int(d)] for d in number)


def test_the_scripts_include_the_reported_ones() -> None:
    names = {unicodedata.name(s[0]) for s in SCRIPTS}
    assert "DIGIT ZERO" in names
    assert "ARABIC-INDIC DIGIT ZERO" in names
    assert "DEVANAGARI DIGIT ZERO" in names
    assert "FULLWIDTH DIGIT ZERO" in names
    assert "MATHEMATICAL BOLD DIGIT ZERO" in names
    assert "MATHEMATICAL MONOSPACE DIGIT ZERO" in names
    assert len(FOREIGN) >= 60


@pytest.fixture
async def roomy(api: Api) -> Api:
    """A second customer whose per-second limit does not get in the way of many requests in
    one (fake) second, so the per-number limits are what is tested."""
    sid, key, aid = await add_customer(api.rt, 100.0, settings=ServiceSettings(rps_limit=10_000))
    return dataclasses.replace(api, service_id=sid, key=key, account_id=aid)


async def count_authorizations(api: Api) -> int:
    async with api.rt.db.read() as conn:
        q = select(func.count()).where(authorizations.c.service_id == api.service_id)
        return int((await conn.execute(q)).scalar() or 0)


def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.getMessage() == "unhandled error"
    ]
    assert bad == [], [r.getMessage() for r in bad]


# -- one number, one spelling --------------------------------------------------------------


async def test_one_number_in_every_digit_script_is_one_call(
    roomy: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = roomy
    first = await api.get("initCall", phone=BILLED_PHONE)
    assert first["status"] is True, first
    balance = (await api.get("getBalance"))["rub_balance"]
    assert balance < 100  # the one real call is billed

    spellings = []
    for ten in FOREIGN:
        spellings.append(spell(BILLED_PHONE, ten))
        spellings.append("+" + spell(BILLED_PHONE, ten))
    # One foreign digit among ASCII ones, and the way the report wrote them.
    spellings.append(BILLED_PHONE[:-1] + "\u0667")
    spellings.append("+7 (916) 123-45-6\uff17")
    spellings.append("\uff0b" + BILLED_PHONE)  # a full-width plus
    spellings.append(BILLED_PHONE + "\u00b2")  # a superscript two
    spellings.append(BILLED_PHONE[:-1] + "\u2466")  # a circled seven
    for phone in spellings:
        body = await api.get("initCall", phone=phone)
        assert body["status"] is False and body["code"] == 3, (phone, body)
        body = await api.post_json("initCall", {"phone": phone})
        assert body["status"] is False and body["code"] == 3, (phone, body)
        body = await api.get("inboundCallWaiting", phone=phone, callback_url="https://e.test/h")
        assert body["status"] is False and body["code"] == 3, (phone, body)

    assert await count_authorizations(api) == 1
    assert (await api.get("getBalance"))["rub_balance"] == balance
    no_unhandled_errors(caplog)


async def test_a_national_prefix_after_the_country_code_is_the_same_number(
    roomy: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """libphonenumber reads +7 8 916... as +7 916...: the limits must too."""
    api = roomy
    first = await api.get("initCall", phone=BILLED_PHONE)
    assert first["status"] is True, first
    for phone in ("789161234567", "+7 8 (916) 123-45-67", 789161234567):
        body = await api.get("initCall", phone=phone)
        assert body["status"] is False and body["code"] == 19, (phone, body)  # 15 s apart
    assert await count_authorizations(api) == 1
    # The same for another country: +44 020... is +44 20...
    uk = await api.get("initCall", phone="442070313000")
    assert uk["status"] is True, uk
    again = await api.get("initCall", phone="4402070313000")
    assert again["status"] is False and again["code"] == 19, again
    no_unhandled_errors(caplog)


async def test_check_phone_takes_ascii_digits_only(
    roomy: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = roomy
    ok = await api.get("checkPhone", phone="+7 (916) 123-45-67")
    assert ok["status"] is True and ok["phone"] == int(BILLED_PHONE)
    # The broader human punctuation stays: dots, slashes, a no-break space, a Unicode dash.
    ok = await api.get("checkPhone", phone="+7.916/123\u00a045\u201367")
    assert ok["status"] is True and ok["phone"] == int(BILLED_PHONE)
    balance = (await api.get("getBalance"))["rub_balance"]
    for ten in FOREIGN:
        body = await api.get("checkPhone", phone="+" + spell(BILLED_PHONE, ten))
        assert body["status"] is False and body["code"] == 3, (ten, body)
    assert (await api.get("getBalance"))["rub_balance"] == balance
    no_unhandled_errors(caplog)


async def test_a_code_in_every_digit_script_is_error_2(
    roomy: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = roomy
    codes = [spell("1234", ten) for ten in FOREIGN]
    codes += ["\u00b2", "12\u00b3", "\u2460", "1\u2461", "\uff11", "\u0660\u0660\u0660\u0667"]
    for code in codes:
        body = await api.get("initCall", phone=TEST_PHONE, code=code)
        assert body["status"] is False and body["code"] == 2, (code, body)
        body = await api.post_json("initCall", {"phone": TEST_PHONE, "code": code})
        assert body["status"] is False and body["code"] == 2, (code, body)
    assert await count_authorizations(api) == 0
    ok = await api.get("initCall", phone=TEST_PHONE, code="1234")
    assert ok["status"] is True and ok["code"] == "1234"
    assert await count_authorizations(api) == 1
    no_unhandled_errors(caplog)


# -- every argument, as an attacker sends it -----------------------------------------------


LONG = "e" * 3000


def _cases() -> list[tuple[str, str, dict[str, Any], int]]:
    """(method, where, params, expected code); ``where`` is "query" or "json"."""
    arabic = "\u0661\u0662"  # "12" in Arabic-Indic digits
    c: list[tuple[str, str, dict[str, Any], int]] = [
        # uid / ucaller_id
        ("getInfo", "query", {"uid": "\u00b2"}, 2),
        ("getInfo", "query", {"uid": "\u2460"}, 2),
        ("getInfo", "query", {"uid": arabic}, 2),
        ("getInfo", "query", {"uid": "\uff11"}, 2),
        ("getInfo", "query", {"ucaller_id": "\u00b2"}, 2),
        ("getInfo", "query", {"uid": "9" * 30}, 2),
        ("getInfo", "query", {"uid": "9" * 5000}, 2),
        ("getInfo", "query", {"uid": "-1"}, 2),
        ("getInfo", "query", {"uid": " "}, 2),
        ("getInfo", "query", {"uid": "1\x00"}, 2),
        ("getInfo", "query", {"uid": "9" * 18}, 10),
        ("getInfo", "json", {"uid": 1e308}, 2),
        ("getInfo", "json", {"uid": -1}, 2),
        ("getInfo", "json", {"uid": 1.5}, 2),
        ("getInfo", "json", {"uid": True}, 2),
        ("getInfo", "json", {"uid": [1]}, 2),
        ("getInfo", "json", {"uid": {"id": 1}}, 2),
        ("getInfo", "json", {"ucaller_id": "\u2460"}, 2),
        ("initRepeat", "query", {"uid": "\u00b2"}, 2),
        ("initRepeat", "json", {"uid": [[1]]}, 2),
        # phone
        ("initCall", "json", {"phone": [int(BILLED_PHONE)]}, 3),
        ("initCall", "json", {"phone": [BILLED_PHONE]}, 3),
        ("initCall", "json", {"phone": {"number": BILLED_PHONE}}, 3),
        ("initCall", "json", {"phone": [[[BILLED_PHONE]]]}, 3),
        ("initCall", "json", {"phone": True}, 3),
        ("initCall", "json", {"phone": -int(BILLED_PHONE)}, 3),
        ("initCall", "json", {"phone": 1e308}, 3),
        ("initCall", "json", {"phone": 7.5}, 3),
        ("initCall", "query", {"phone": "7" * 20_000}, 3),
        ("initCall", "query", {"phone": BILLED_PHONE + "\x00"}, 3),
        ("initCall", "query", {"phone": "   "}, 3),
        ("initCall", "query", {"phone": "7916abc4567"}, 3),
        ("initCall", "query", {"phone": ""}, 2),
        ("checkPhone", "json", {"phone": [BILLED_PHONE]}, 3),
        ("checkPhone", "json", {"phone": {"a": {"b": [1]}}}, 3),
        ("checkPhone", "json", {"phone": -int(BILLED_PHONE)}, 3),
        ("checkPhone", "json", {"phone": 1e308}, 3),
        ("checkPhone", "query", {"phone": BILLED_PHONE + "\x00"}, 3),
        ("checkPhone", "query", {"phone": "7" * 20_000}, 3),
        ("inboundCallWaiting", "json", {"phone": [BILLED_PHONE], "callback_url": "https://e.t"}, 3),
        # code
        ("initCall", "json", {"phone": TEST_PHONE, "code": 1e308}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "code": -1}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "code": 12345}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "code": 1.5}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "code": True}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "code": [1234]}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "code": {"c": 1}}, 2),
        ("initCall", "query", {"phone": TEST_PHONE, "code": "12\x00"}, 2),
        # text: control characters, non-strings, length
        ("initCall", "query", {"phone": TEST_PHONE, "client": "a\x00b"}, 2),
        ("initCall", "query", {"phone": TEST_PHONE, "unique": "\x00"}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "client": "a\x00b"}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "unique": "u\x00"}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "client": "line\nbreak"}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "client": "del\x7f"}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "client": "c1\x85"}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "client": {"n": 1}}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "unique": [1, 2]}, 2),
        ("initCall", "query", {"phone": TEST_PHONE, "client": "x" * 20_000}, 2),
        ("inboundCallWaiting", "query", {"phone": TEST_PHONE, "callback_url": "https://e/\x00"}, 2),
        ("inboundCallWaiting", "json", {"phone": TEST_PHONE, "callback_url": "https://e/\r\nb"}, 2),
        ("inboundCallWaiting", "json", {"phone": TEST_PHONE, "callback_url": ["https://e.t"]}, 2),
        (
            "inboundCallWaiting",
            "query",
            {"phone": TEST_PHONE, "callback_url": "https://" + LONG},
            2,
        ),
        # flags
        ("initCall", "json", {"phone": TEST_PHONE, "voice": {"on": True}}, 2),
        ("initCall", "json", {"phone": TEST_PHONE, "mix": [True]}, 2),
        ("initCall", "query", {"phone": TEST_PHONE, "voice": "\uff11"}, 2),
    ]
    return c


async def answer(
    api: Api, method: str, params: dict[str, Any], *, where: str = "query"
) -> dict[str, Any]:
    """The error object a client sees (asserted to be one: HTTP 200, JSON, integer code)."""
    if where == "query":
        r = await api.client.get(f"/v1.0/{method}", params={**api.creds, **params})
    else:
        r = await api.client.post(
            f"/v1.0/{method}",
            json=params,
            headers={"Authorization": f"Bearer {api.key}.{api.service_id}"},
        )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body: dict[str, Any] = r.json()
    assert body["status"] is False and isinstance(body["error"], str) and body["error"], body
    return body


async def test_hostile_arguments_get_their_ordinary_error(
    api: Api, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = []
    for method, where, params, expected in _cases():
        clock.advance(1)  # keep under the per-second limit
        body = await answer(api, method, params, where=where)
        if body["code"] != expected:
            wrong.append((method, where, str(params)[:80], expected, body))
    assert wrong == []
    no_unhandled_errors(caplog)


BROKEN_JSON = [
    (b'{"uid": NaN}', 1),
    (b'{"uid": Infinity}', 1),
    (b'{"uid": -Infinity}', 1),
    (b'{"uid": 1e999}', 1),
    (b'{"client": "\\ud800"}', 1),
    (b'{"phone": ' + b"[" * 5000 + b"]" * 5000 + b"}", 1),
    (b"[" * 100_000, 1),
    # Beyond 64 bits JSON integers parse as floats: no id.
    (b'{"uid": 123456789012345678901234567890}', 2),
    (b'{"uid": 18446744073709551615}', 2),
]


async def test_what_json_cannot_carry_is_an_error(
    api: Api, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    for raw, expected in BROKEN_JSON:
        clock.advance(1)
        r = await api.client.post(
            "/v1.0/getInfo",
            content=raw,
            headers={
                "Authorization": f"Bearer {api.key}.{api.service_id}",
                "Content-Type": "application/json",
            },
        )
        body = r.json()
        assert body["status"] is False and body["code"] == expected, (raw[:40], body)
    no_unhandled_errors(caplog)


# -- credentials ---------------------------------------------------------------------------


def _credential_cases() -> list[Any]:
    """(how, value): the service id or key an attacker sends with an otherwise right pair."""
    return [
        ("service_id", "\u00b2"),
        ("service_id", "\u2460"),
        ("service_id", "ARABIC"),  # the right id in Arabic-Indic digits
        ("service_id", "FULLWIDTH"),  # the right id in full-width digits
        ("service_id", "9" * 19),
        ("service_id", "9" * 18),
        ("service_id", "9" * 5000),
        ("service_id", "-1"),
        ("service_id", "1\x00"),
        ("service_id", " "),
        ("service_id", -1),
        ("service_id", 1e308),
        ("service_id", True),
        ("service_id", [1]),
        ("service_id", {"id": 1}),
        ("key", {"k": "v"}),
        ("key", ["x"]),
        ("key", "k\x00"),
        ("key", "\u043a\u043b\u044e\u0447"),
        ("key", "k" * 20_000),
        ("key", 12345),
        ("key", True),
    ]


def _spelled(value: Any, api: Api) -> Any:
    if value == "ARABIC":
        return spell(str(api.service_id), "".join(chr(0x0660 + d) for d in range(10)))
    if value == "FULLWIDTH":
        return spell(str(api.service_id), "".join(chr(0xFF10 + d) for d in range(10)))
    return value


AUTH_FAILED = {
    "status": False,
    "error": "Authentication failed. Make sure you are using the correct authentication "
    "scheme. (https://developer.ucaller.ru/)",
    "code": 401,
}


async def test_hostile_credentials_are_401(
    api: Api, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = []
    for name, raw in _credential_cases():
        value = _spelled(raw, api)
        creds: dict[str, Any] = {**api.creds, name: value}
        for where in ("query", "json"):
            if where == "query" and not isinstance(value, (str, int, float)):
                continue  # a query string carries text only
            # Past the failure window: 20 failures would block the address (error 0).
            clock.advance(301)
            if where == "query":
                r = await api.client.get("/v1.0/getBalance", params=creds)
            else:
                r = await api.client.post("/v1.0/getBalance", json=creds)
            if r.json() != AUTH_FAILED:
                wrong.append((name, str(value)[:40], where, r.text[:200]))
    assert wrong == []
    no_unhandled_errors(caplog)


HEADERS = [
    b"Bearer \xff\xfe.1",
    b"Bearer KEY.\xb2",
    b"Bearer KEY.\xd9\xa1",  # UTF-8 of an Arabic-Indic one, read as latin-1
    "Bearer KEY.\u00b9".encode("latin-1"),
    b"Bearer \x00.1",
    b"Bearer " + b"k" * 8000 + b".1",
    b"Bearer .",
    b"Bearer ....",
]


async def test_hostile_bearer_headers_are_401(
    api: Api, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    for header in HEADERS:
        clock.advance(301)
        header = header.replace(b"KEY", api.key.encode())
        r = await api.client.get("/v1.0/getBalance", headers={"Authorization": header})
        assert r.json() == AUTH_FAILED, (header[:40], r.text)
    no_unhandled_errors(caplog)


async def test_unknown_service_and_wrong_key_are_the_same_failure(api: Api) -> None:
    """No existence oracle: both answer alike and both count toward blocking the IP."""
    wrong_key = api.key[:-1] + ("A" if api.key[-1] != "A" else "B")
    unknown = await api.get("getBalance", service_id=api.service_id + 1000, key=api.key)
    wrong = await api.get("getBalance", service_id=api.service_id, key=wrong_key)
    assert unknown == wrong
    assert unknown["code"] == 401
    # 20 failures block the address (MemoryCounters/Redis default): mix both kinds, and the
    # non-ASCII service id, to show each one counts.
    for i in range(17):
        if i % 2:
            await api.get("getBalance", service_id=api.service_id + 1000, key=api.key)
        else:
            await api.get("getBalance", service_id=api.service_id, key=wrong_key)
    last = await api.get("getBalance", service_id="\u00b2", key=api.key)
    assert last["code"] == 401
    blocked = await api.get("getBalance")
    assert blocked["status"] is False and blocked["code"] == 0, blocked


# -- getInfo of an inbound verification ----------------------------------------------------


async def test_get_info_of_an_inbound_verification_has_no_code(api: Api) -> None:
    waiting = await api.get(
        "inboundCallWaiting", phone="+79161234567", callback_url="https://example.com/hook"
    )
    assert waiting["status"] is True
    info = await api.get("getInfo", uid=waiting["ucaller_id"])
    assert info["status"] is True
    assert "code" not in info
    # What PY01 requires is all there.
    for name in ("ucaller_id", "phone", "init_time", "call_status", "country_code", "cost"):
        assert name in info, name
    assert "balance" in info
    assert info["ucaller_id"] == waiting["ucaller_id"]
    assert info["phone"] == "7916***4567"
    # An outgoing call still carries its code.
    call = await api.get("initCall", phone=TEST_PHONE, code="0000")
    assert (await api.get("getInfo", uid=call["ucaller_id"]))["code"] == "0000"


# -- verbs and request targets -------------------------------------------------------------


async def test_unknown_verbs_get_the_error_object(api: Api, clock: FakeClock) -> None:
    for verb in ("TRACE", "FOO", "CONNECT", "PROPFIND"):
        for path in (
            "/health",
            "//health",
            "/v1.0/health",
            "/v1.0/getBalance",
            "/nowhere",
            "/metrics",
            "/livez",
        ):
            clock.advance(1)
            r = await api.client.request(verb, path, params=api.creds)
            assert r.status_code == 200, (verb, path)
            assert r.headers["content-type"] == "application/json; charset=utf-8", (verb, path)
            body = r.json()
            assert body["status"] is False and body["code"] == 405, (verb, path, body)


# -- a real server: raw bytes on the socket -------------------------------------------------


@pytest.fixture
def live(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    env = {"OPENCALLER_DATABASE_URL": db_url}
    if REDIS_URL:
        env["OPENCALLER_REDIS_URL"] = REDIS_URL
        env["OPENCALLER_REDIS_PREFIX"] = f"oc-test:{uuid.uuid4().hex[:12]}:"
    server = start_server(tmp_path, env)
    try:
        yield server
    finally:
        server.kill()


def raw_request(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_raw_bytes_on_a_real_server(live: LiveServer) -> None:
    import orjson

    def send(line: str, headers: bytes = b"") -> dict[str, Any]:
        status, hdrs, body = raw_request(
            live,
            line.encode("latin-1") + b"\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n",
        )
        assert status == 200, body
        assert hdrs["content-type"] == "application/json; charset=utf-8", body
        parsed: dict[str, Any] = orjson.loads(body)
        return parsed

    q = f"service_id={live.service_id}&key={live.key}"
    assert send("OPTIONS * HTTP/1.1")["code"] == 405
    assert send("TRACE /health HTTP/1.1")["code"] == 405
    assert send("TRACE * HTTP/1.1")["code"] == 405
    assert send("GET /health HTTP/1.1")["status"] is True
    bearer = b"Authorization: Bearer \xff\xfe" + live.key.encode() + b".\xb2\r\n"
    assert send("GET /v1.0/getBalance HTTP/1.1", bearer)["code"] == 401
    bearer = b"Authorization: Bearer " + live.key.encode() + b".\xd9\xa1\r\n"
    assert send("GET /v1.0/getBalance HTTP/1.1", bearer)["code"] == 401
    assert send(f"GET /v1.0/initCall?{q}&phone={TEST_PHONE}&client=a%00b HTTP/1.1")["code"] == 2
    assert send(f"GET /v1.0/initCall?{q}&phone={TEST_PHONE}&unique=%00 HTTP/1.1")["code"] == 2
    assert send(f"GET /v1.0/getInfo?{q}&uid=%C2%B2 HTTP/1.1")["code"] == 2
    assert send(f"GET /v1.0/getBalance?service_id=%C2%B2&key={live.key} HTTP/1.1")["code"] == 401
    arabic = "".join(f"%D9%{0xA0 + int(d):02X}" for d in str(live.service_id))
    assert send(f"GET /v1.0/getBalance?service_id={arabic}&key={live.key} HTTP/1.1")["code"] == 401

    # The command line sends what it cannot read as digits on to the server: error 3, no call.
    env = {
        "OPENCALLER_URL": live.url,
        "OPENCALLER_SERVICE_ID": str(live.service_id),
        "OPENCALLER_KEY": live.key,
    }
    for phone in ("+" + spell(BILLED_PHONE, FOREIGN[0]), "7916abc1234567"):
        result = CliRunner().invoke(cli, ["call", phone, "--json"], env=env)
        assert result.exit_code != 0
        assert "error 3:" in result.stderr and "ucaller_id" not in result.stdout, result.stderr
    result = CliRunner().invoke(cli, ["call", "+7 (900) 000-00-01", "--json"], env=env)
    assert result.exit_code == 0, result.stderr

    live.kill()
    log = live.output.read_text(errors="replace")
    assert "unhandled error" not in log and "Traceback" not in log, log


# -- the other places a phone enters -------------------------------------------------------


async def test_test_numbers_setting_is_normalised_like_the_api(
    settings: Settings, clock: FakeClock
) -> None:
    dumped = settings.model_dump()
    dumped["test_numbers"] = ["+7 (916) 123-45-67"]
    dumped["simulator"]["outcomes"] = {"+7 (916) 123-45-68": "busy"}
    custom = Settings(**dumped)
    assert custom.test_numbers == [BILLED_PHONE]
    assert custom.simulator.outcomes == {"79161234568": "busy"}
    async with make_api(custom, clock) as api:
        body = await api.get("initCall", phone=BILLED_PHONE)
        info = await api.get("getInfo", uid=body["ucaller_id"])
        assert info["is_test"] is True and info["cost"] == 0
        body = await api.get("initCall", phone="79161234568")
        info = await api.wait_final(body["ucaller_id"])
        assert info["call_outcome"] == "busy"
    with pytest.raises(ValidationError):
        SimulatorSettings(outcomes={spell(BILLED_PHONE, FOREIGN[0]): "busy"})
    for bad in (spell(BILLED_PHONE, FOREIGN[0]), "7916abc", ""):
        with pytest.raises(ValidationError):
            Settings(**{**settings.model_dump(), "test_numbers": [bad]})
        with pytest.raises(ValidationError):
            Settings(**{**settings.model_dump(), "test_ranges": [bad]})


def test_an_mnp_file_with_other_digits_is_refused(tmp_path: Path) -> None:
    ok = parse_mnp_text("number;operator\n79161234567;MTS\n", tmp_path / "ok.csv")
    assert [p.number for p in ok] == [int(BILLED_PHONE)]
    for number in (spell(BILLED_PHONE, FOREIGN[0]), BILLED_PHONE[:-1] + "\u0667"):
        with pytest.raises(RegistryFormatError):
            parse_mnp_text(f"number;operator\n{number};MTS\n", tmp_path / "bad.csv")


async def test_dashboard_numbers_in_other_digits_are_ignored_or_not_found(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    page = new_page(api.client)
    await page.sign_up()
    for query in (
        {"service": "\u00b2"},
        {"service": "\u0661\u0662"},
        {"service": "9" * 5000},
        {"days": "\u00b2"},
        {"days": "9" * 5000},
    ):
        r = await page.get("/dashboard/stats", **query)
        assert r.status_code in (200, 404), (query, r.status_code)
    for query in ({"service": "\u00b2"}, {"page": "\u2460"}, {"page": "9" * 5000}):
        r = await page.get("/dashboard/log", **query)
        assert r.status_code in (200, 404), (query, r.status_code)
    # The log search keeps ASCII digits only.
    r = await page.get("/dashboard/log", phone="\u0667\u0669")
    assert r.status_code == 200
    await page.client.aclose()
    no_unhandled_errors(caplog)
