"""The fraud guard and conversion routing, through the public API and the dashboard.

Runs on SQLite (counters in the database) and, with OPENCALLER_TEST_DATABASE_URL and
OPENCALLER_TEST_REDIS_URL, on PostgreSQL with the counters in Redis."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from opencaller.config import FraudSettings, Settings, SimulatorSettings
from opencaller.domain.clock import FakeClock
from opencaller.storage.tables import authorizations

from .dashboard_support import Page, make_admin, new_page
from .support import Api, make_api

PROXY = "203.0.113.7"  # the test client's address (support.make_api), trusted below
SCATTERED_CODES = ("903", "905", "906", "909", "910", "915", "917", "920", "925", "929", "950")


@pytest.fixture
def fraud_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "trusted_proxies": [f"{PROXY}/32"],
            "fraud": FraudSettings(routing_seed=7, routing_min_sample=5),
            "simulator": SimulatorSettings(
                delay_s=0.02,
                conversion={
                    "7916": {"flash": 0.05, "voice": 0.95},
                    "7903": {"flash": 0.95, "voice": 0.05},
                },
                conversion_seed=3,
            ),
        }
    )


@pytest.fixture
async def fapi(fraud_settings: Settings, clock: FakeClock) -> AsyncIterator[Api]:
    async with make_api(fraud_settings, clock, balance_rub=100_000) as a:
        yield a


async def init_call(
    api: Api, phone: str, *, ip: str | None = None, **params: Any
) -> tuple[dict[str, Any], httpx.Response]:
    clock = api.rt.clock
    assert isinstance(clock, FakeClock)
    clock.advance(0.05)  # under the service's 50 requests per second
    headers = {"X-Forwarded-For": ip} if ip else {}
    r = await api.client.get(
        "/v1.0/initCall", params={**api.creds, "phone": phone, **params}, headers=headers
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body, r


async def verify(api: Api, answer: dict[str, Any]) -> None:
    body = await api.get("verifyCode", uid=answer["ucaller_id"], code=answer["code"])
    assert body["status"] is True, body


async def balance(api: Api) -> float:
    return float((await api.get("getBalance"))["rub_balance"])


async def verified_call(api: Api, phone: str, ip: str | None = None) -> None:
    body, _ = await init_call(api, phone, ip=ip)
    assert body["status"] is True, body
    await verify(api, body)


async def customer_page(api: Api) -> tuple[Page, Api]:
    """A customer signed in to the dashboard, with a funded service created there."""
    page = new_page(api.client)
    await page.sign_up()
    r = await page.post("/dashboard/services", {"name": "Shop", "use_direction": "checkout"})
    sid = int(r.headers["location"].rsplit("/", 1)[1])
    text = (await page.get(f"/dashboard/services/{sid}")).text
    found = re.search(r'id="secret-key"[^>]*>([A-Za-z0-9]{32})<', text)
    assert found
    async with api.rt.db.read() as conn:
        from opencaller.storage.tables import services

        aid = (
            await conn.execute(select(services.c.account_id).where(services.c.id == sid))
        ).scalar_one()
    from opencaller.domain import billing

    async with api.rt.db.write() as conn:
        await billing.credit(conn, aid, 10**8, kind="topup", now=api.rt.clock.now())
    return page, Api(api.rt, api.client, sid, found.group(1), aid)


async def test_a_run_of_unverified_numbers_is_refused_uncharged_with_its_reason(
    fapi: Api,
) -> None:
    page, api = await customer_page(fapi)
    await verified_call(api, "79031112233")  # the service reports codes
    answers = []
    before_refusals = 0.0
    for i in range(12):
        if i == 8:
            before_refusals = await balance(api)
        answers.append(await init_call(api, f"7916123{i:04d}"))
    assert [b["status"] for b, _ in answers[:8]] == [True] * 8
    for body, r in answers[8:]:
        assert body["status"] is False and body["code"] == 64
        assert "79161230000-79161230099" in body["error"]
        assert body["error"].startswith("Suspected fraud")
        wait = int(r.headers["Retry-After"])
        assert 0 < wait <= 2 * 3600
    assert await balance(api) == before_refusals  # refused calls are never charged

    text = (await page.get("/dashboard/fraud")).text
    assert text.count("+791612300") == 4  # the four refused numbers, with the reason
    assert "8 calls to the hundred numbers 79161230000-79161230099" in text
    assert "run" in text  # counted under its rule in the statistics
    async with api.rt.db.read() as conn:
        q = select(authorizations.c.phone).where(authorizations.c.service_id == api.service_id)
        placed = set((await conn.execute(q)).scalars())
    assert "79161230008" not in placed  # nothing was queued for a refused call
    await page.client.aclose()


async def test_high_risk_range_is_refused_without_retry_after(fapi: Api) -> None:
    body, r = await init_call(fapi, "78095051234")  # 8-809: premium rate
    assert body["code"] == 64 and "high-risk range +7809" in body["error"]
    assert "Retry-After" not in r.headers
    body, _ = await init_call(fapi, "79161234567")
    assert body["status"] is True


async def test_geo_permissions_on_a_new_service(fapi: Api) -> None:
    page, api = await customer_page(fapi)
    body, _ = await init_call(api, "77012345678")  # Kazakhstan: not a home country
    assert body == {
        "status": False,
        "error": "Authorization for this country is forbidden by the service's geography settings",
        "code": 9,
    }
    assert (await init_call(api, "79161234567"))[0]["status"] is True
    text = (await page.get("/dashboard/fraud")).text
    assert "country KZ is not opened for this service" in text

    r = await page.post(
        f"/dashboard/fraud/{api.service_id}",
        {"geo_restricted": "1", "open_countries": "kz", "channel": "request"},
    )
    assert r.status_code == 303
    assert (await init_call(api, "77012345678"))[0]["status"] is True
    # The suite's fixture services, like those created before the guard, are open.
    assert (await init_call(fapi, "77012345679"))[0]["status"] is True
    await page.client.aclose()


async def test_operator_lifts_a_block(fapi: Api) -> None:
    await verified_call(fapi, "79031112233")
    for i in range(8):
        assert (await init_call(fapi, f"7926555{i:04d}"))[0]["status"] is True
    body, _ = await init_call(fapi, "79265550008")
    assert body["code"] == 64

    admin = new_page(fapi.client)
    email = await make_admin(fapi.rt)
    await admin.sign_in(email)
    text = (await admin.get("/admin/fraud")).text
    assert f"s{fapi.service_id}:run:792655500" in text
    block_id = re.search(r'action="/admin/fraud/blocks/(\d+)/lift"', text)
    assert block_id
    r = await admin.post(f"/admin/fraud/blocks/{block_id.group(1)}/lift", {})
    assert r.status_code == 303
    text = (await admin.get("/admin/fraud")).text
    assert "root@example.com" in text  # who lifted it
    assert f'action="/admin/fraud/blocks/{block_id.group(1)}/lift"' not in text
    assert (await init_call(fapi, "79265550009"))[0]["status"] is True
    await admin.client.aclose()


async def stored_kinds(api: Api, uids: list[int]) -> list[str]:
    async with api.rt.db.read() as conn:
        q = select(authorizations.c.id, authorizations.c.kind).where(authorizations.c.id.in_(uids))
        kinds = dict((await conn.execute(q)).all())
    return [str(kinds[u]) for u in uids]


async def test_auto_routing_moves_an_operator_to_the_channel_that_converts(fapi: Api) -> None:
    page, api = await customer_page(fapi)
    r = await page.post(
        f"/dashboard/fraud/{api.service_id}",
        {"geo_restricted": "1", "open_countries": "", "channel": "auto"},
    )
    assert r.status_code == 303
    rng = random.Random(11)
    uids: dict[str, list[int]] = {"7916": [], "7903": []}
    for _ in range(60):
        for prefix in uids:
            phone = f"{prefix}{rng.randrange(10**7):07d}"
            body, _ = await init_call(api, phone)
            assert body["status"] is True, body
            uid = body["ucaller_id"]
            (kind,) = await stored_kinds(api, [uid])
            uids[prefix].append(uid)
            if api.rt.simulator.converts(phone, kind):
                await verify(api, body)
    voice_late = (await stored_kinds(api, uids["7916"][-30:])).count("voice")
    flash_late = (await stored_kinds(api, uids["7903"][-30:])).count("flash")
    assert voice_late >= 24, voice_late  # 7916 answers voice calls
    assert flash_late >= 24, flash_late  # 7903 answers flash calls
    # Both channels were tried for each operator (the minimum sample).
    assert set(await stored_kinds(api, uids["7916"][:10])) == {"flash", "voice"}

    # The customer sees per-operator conversion by channel (operator: the number's range
    # here, as no registry is imported).
    text = (await page.get("/dashboard/fraud")).text
    rows = re.findall(
        r"<tr><td>([^<]+)</td><td>[^<]*</td><td class=\"num\">(\d+)</td>"
        r"<td class=\"num\">(\d+)</td><td class=\"num\">([\d.]+)</td></tr>",
        text,
    )
    by_operator: dict[str, list[float]] = {}
    for operator, calls, _codes, rate in rows:
        assert int(calls) > 0
        by_operator.setdefault(operator, []).append(float(rate))
    assert len(by_operator) == 2 and "7916" in by_operator  # 7903: its holder's name
    assert max(by_operator["7916"]) >= 80 and min(by_operator["7916"]) <= 20
    await page.client.aclose()


T = TypeVar("T")


def interleave(rng: random.Random, a: list[T], b: list[T]) -> list[T]:
    """``a`` and ``b`` merged at random, each keeping its order."""
    picks = [0] * len(a) + [1] * len(b)
    rng.shuffle(picks)
    streams = (iter(a), iter(b))
    return [next(streams[p]) for p in picks]


def scattered(rng: random.Random) -> str:
    return f"7{rng.choice(SCATTERED_CODES)}{rng.randrange(10**7):07d}"


async def test_pumping_attack_is_stopped_and_legitimate_users_are_not(fapi: Api) -> None:
    """The suite's short version of bench/fraud.py: 400 attack and 100 legitimate requests."""
    rng = random.Random(5)
    one = [(f"7916123{i:04d}", f"198.51.100.{i % 100}") for i in range(200)]
    two = [(f"7926777{i:04d}", f"198.51.100.{(i + 50) % 100}") for i in range(200)]
    attack = interleave(rng, one, two)  # both runs at once, each in order
    legit = [(scattered(rng), f"192.0.2.{i}") for i in range(100)]
    plan = interleave(
        rng, [("attack", p, ip) for p, ip in attack], [("legit", p, ip) for p, ip in legit]
    )
    price = 0.0
    placed = {"attack": 0, "legit": 0}
    start = await balance(fapi)
    for who, phone, ip in plan:
        body, _ = await init_call(fapi, phone, ip=ip)
        if body["status"]:
            placed[who] += 1
            if who == "legit":
                await verify(fapi, body)
        else:
            assert body["code"] == 64, body
    charged = start - await balance(fapi)
    price = charged / (placed["attack"] + placed["legit"])
    assert placed["attack"] <= 0.05 * 400, placed
    assert placed["legit"] >= 0.99 * 100, placed
    assert charged == pytest.approx(price * (placed["attack"] + placed["legit"]))


async def test_a_service_without_verify_code_is_judged_on_clustered_numbers_only(
    fapi: Api,
) -> None:
    """Its backend is its only address and no code is ever reported: volume from one
    address is not suspect, a run of numbers still is (four times the minimum)."""
    rng = random.Random(8)
    for _ in range(100):
        body, _ = await init_call(fapi, scattered(rng), ip="192.0.2.10")
        assert body["status"] is True, body
    answers = [(await init_call(fapi, f"7916444{i:04d}"))[0] for i in range(40)]
    assert [b["status"] for b in answers[:32]] == [True] * 32
    assert {b.get("code") for b in answers[32:]} == {64}
