"""Every rule of spec §4.3/§7/§8/§9 through the public API, with the clock under control."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opencaller.config import Settings
from opencaller.domain.accounts import update_service
from opencaller.domain.clock import FakeClock
from opencaller.domain.settings import ServiceSettings
from opencaller.storage.tables import accounts, authorizations, ledger

from .support import Api, make_api


async def set_settings(api: Api, **values: Any) -> None:
    async with api.rt.db.write() as conn:
        await update_service(conn, api.service_id, settings=ServiceSettings(**values))


async def raw(api: Api, method: str, **params: Any) -> httpx.Response:
    return await api.client.get(f"/v1.0/{method}", params={**api.creds, **params})


def err(body: dict[str, Any]) -> int:
    assert body["status"] is False, body
    assert set(body) == {"status", "error", "code"}, body
    return int(body["code"])


# -- per number ---------------------------------------------------------------------------


async def test_fifteen_seconds_between_authorizations_to_a_number(
    api: Api, clock: FakeClock
) -> None:
    assert (await api.get("initCall", phone="79161234567"))["status"] is True
    clock.advance(14)
    r = await raw(api, "initCall", phone="79161234567")
    assert err(r.json()) == 19
    assert r.headers["Retry-After"] == "1"
    clock.advance(1)
    assert (await api.get("initCall", phone="79161234567"))["status"] is True


async def test_four_calls_a_minute_per_number(api: Api, clock: FakeClock) -> None:
    t0 = clock.now()
    for _ in range(4):
        assert (await api.get("initCall", phone="79161234567"))["status"] is True
        clock.advance(15)
    clock.t = t0 + 59  # the first call is 59 s old: four in the window
    r = await raw(api, "initCall", phone="79161234567")
    assert err(r.json()) == 18
    assert r.headers["Retry-After"] == "1"
    clock.t = t0 + 60.5  # the window slides: the first call has left it
    assert (await api.get("initCall", phone="79161234567"))["status"] is True


async def test_thirty_calls_a_day_per_number(api: Api, clock: FakeClock) -> None:
    t0 = clock.now()
    for _ in range(30):
        assert (await api.get("initCall", phone="79161234567"))["status"] is True
        clock.advance(61)  # one a minute: clear of the minute and gap limits
    clock.t = t0 + 86_399  # 24 h sliding window still holds the first call
    r = await raw(api, "initCall", phone="79161234567")
    assert err(r.json()) == 18
    assert int(r.headers["Retry-After"]) == 1
    clock.t = t0 + 86_400.5
    assert (await api.get("initCall", phone="79161234567"))["status"] is True


async def test_per_number_limits_count_every_service(api: Api, clock: FakeClock) -> None:
    sid, key, _ = await api.new_service()
    await api.get("initCall", phone="79161234567")
    clock.advance(5)
    r = await api.client.get(
        "/v1.0/initCall", params={"service_id": sid, "key": key, "phone": "79161234567"}
    )
    assert err(r.json()) == 19


async def test_refused_requests_do_not_count(api: Api, clock: FakeClock) -> None:
    await api.get("initCall", phone="79161234567")
    for _ in range(10):
        clock.advance(1)
        await api.get("initCall", phone="79161234567")  # refused with 19
    clock.advance(5)  # 15 s after the accepted one
    assert (await api.get("initCall", phone="79161234567"))["status"] is True


async def test_test_numbers_skip_per_number_limits_and_cost_nothing(api: Api) -> None:
    ids = []
    for _ in range(40):
        body = await api.get("initCall", phone="79000000001")
        assert body["status"] is True
        ids.append(body["ucaller_id"])
    assert len(set(ids)) == 40
    assert (await api.get("getBalance"))["rub_balance"] == 100


# -- per service --------------------------------------------------------------------------


async def test_hourly_limit_of_the_service(api: Api, clock: FakeClock) -> None:
    await set_settings(api, hourly_limit=3)
    t0 = clock.now()
    for n in range(3):
        assert (await api.get("initCall", phone=f"7916123450{n}"))["status"] is True
        clock.advance(60)
    r = await raw(api, "initCall", phone="79000000001")  # test numbers count too
    assert err(r.json()) == 50
    assert int(r.headers["Retry-After"]) == 3600 - 180
    clock.t = t0 + 3600.5
    assert (await api.get("initCall", phone="79161234599"))["status"] is True


async def test_requests_per_second(api: Api, clock: FakeClock) -> None:
    await set_settings(api, rps_limit=5)
    codes = [(await raw(api, "getBalance")) for _ in range(8)]
    assert [r.json()["status"] for r in codes] == [True] * 5 + [False] * 3
    assert err(codes[-1].json()) == 429
    assert codes[-1].headers["Retry-After"] == "1"
    clock.advance(1)
    assert (await api.get("getBalance"))["status"] is True


async def test_ip_allow_list(api: Api) -> None:
    await set_settings(api, ip_allowlist=["198.51.100.0/24"])
    assert err(await api.get("getBalance")) == 1003
    await set_settings(api, ip_allowlist=["203.0.113.0/24"])
    assert (await api.get("getBalance"))["status"] is True


async def test_disabled_and_archived_services(api: Api) -> None:
    async with api.rt.db.write() as conn:
        await update_service(conn, api.service_id, enabled=False)
    assert err(await api.get("initCall", phone="79000000001")) == 4
    async with api.rt.db.write() as conn:
        await update_service(conn, api.service_id, enabled=True, archived=True)
    assert err(await api.get("getInfo", uid=1)) == 1004


async def test_allowed_countries(api: Api) -> None:
    await set_settings(api, allowed_countries=["KZ"])
    assert err(await api.get("initCall", phone="79161234567")) == 9
    assert (await api.get("initCall", phone="77011234567"))["status"] is True


async def test_voice_only_where_enabled(api: Api) -> None:
    assert err(await api.get("initCall", phone="12025550123", voice="true")) == 20
    assert (await api.get("initCall", phone="79161234567", voice="true"))["status"] is True
    await set_settings(api, voice_enabled=False)
    assert err(await api.get("initCall", phone="79161234568", voice="true")) == 20


async def stored_kind(api: Api, uid: int) -> str:
    async with api.rt.db.read() as conn:
        q = select(authorizations.c.kind).where(authorizations.c.id == uid)
        return str((await conn.execute(q)).scalar())


async def test_mix_where_voice_is_unavailable_is_a_flash_call(api: Api) -> None:
    body = await api.get("initCall", phone="12025550123", mix="true")
    assert body["status"] is True
    assert await stored_kind(api, body["ucaller_id"]) == "flash"
    ru = await api.get("initCall", phone="79161234567", mix="true")
    assert await stored_kind(api, ru["ucaller_id"]) == "mix"


# -- per account --------------------------------------------------------------------------


async def test_blocked_account(api: Api) -> None:
    async with api.rt.db.write() as conn:
        await conn.execute(
            accounts.update().where(accounts.c.id == api.account_id).values(blocked=True)
        )
    assert err(await api.get("getBalance")) == 1001


async def test_low_balance(settings: Settings, clock: FakeClock) -> None:
    async with make_api(settings, clock, balance_rub=0.5) as api:
        assert (await api.get("initCall", phone="79161234567"))["status"] is True
        assert err(await api.get("initCall", phone="79161234568")) == 1002
        # test numbers need no money
        assert (await api.get("initCall", phone="79000000001"))["status"] is True


async def test_a_call_refused_for_money_does_not_count_towards_the_limits(
    settings: Settings, clock: FakeClock
) -> None:
    """Nothing was written, so nothing was counted: after a top-up the same number is called
    at once (no 15 s gap), and the hourly limit still has its full value."""
    async with make_api(settings, clock, balance_rub=0.0) as api:
        await set_settings(api, hourly_limit=1)
        assert err(await api.get("initCall", phone="79161234567")) == 1002
        async with api.rt.db.write() as conn:
            await conn.execute(
                accounts.update().where(accounts.c.id == api.account_id).values(balance=10_000)
            )
        assert (await api.get("initCall", phone="79161234567"))["status"] is True
        assert err(await api.get("initCall", phone="79161234599")) == 50


async def test_phone_verification_required(settings: Settings, clock: FakeClock) -> None:
    settings = settings.model_copy(update={"require_verified_phone": True})
    async with make_api(settings, clock) as api:
        assert err(await api.get("initCall", phone="79161234567")) == 1005


async def test_repeated_auth_failures_block_the_ip(api: Api, clock: FakeClock) -> None:
    for _ in range(20):
        r = await api.client.get(
            "/v1.0/getBalance", params={"service_id": api.service_id, "key": "x" * 32}
        )
        assert err(r.json()) == 401
    r = await raw(api, "getBalance")  # even with the right key now
    assert err(r.json()) == 0
    assert int(r.headers["Retry-After"]) == 900
    clock.advance(901)
    assert (await api.get("getBalance"))["status"] is True


# -- idempotency --------------------------------------------------------------------------


async def test_unique_returns_the_first_authorization_without_a_second_charge(
    api: Api, clock: FakeClock
) -> None:
    first = await api.get("initCall", phone="79161234567", unique="key-1")
    clock.advance(1)  # inside the 15 s gap: a replay must not be refused by limits
    again = await api.get("initCall", phone="79161234567", unique="key-1")
    assert again["exists"] is True and again["ucaller_id"] == first["ucaller_id"]
    assert again["code"] == first["code"]
    assert (await api.get("getBalance"))["rub_balance"] == pytest.approx(99.7)


async def test_unique_with_another_phone_is_refused(api: Api) -> None:
    await api.get("initCall", phone="79161234567", unique="key-2")
    body = await api.get("initCall", phone="79161234568", unique="key-2")
    assert err(body) == 2
    assert "unique" in body["error"]


async def test_unique_is_scoped_to_the_service(api: Api) -> None:
    sid, key, _ = await api.new_service()
    a = await api.get("initCall", phone="79000000001", unique="shared")
    r = await api.client.get(
        "/v1.0/initCall",
        params={"service_id": sid, "key": key, "phone": "79000000001", "unique": "shared"},
    )
    assert r.json()["exists"] is False
    assert r.json()["ucaller_id"] != a["ucaller_id"]


# -- free repeats -------------------------------------------------------------------------


async def test_two_free_repeats_within_five_minutes(api: Api, clock: FakeClock) -> None:
    first = await api.get("initCall", phone="79000000002", code="1111")
    await api.wait_final(first["ucaller_id"])
    r1 = await api.get("initRepeat", uid=first["ucaller_id"])
    assert r1["free_repeated"] is True
    await api.wait_final(r1["ucaller_id"])
    r2 = await api.get("initRepeat", uid=r1["ucaller_id"])  # a repeat's id joins the chain
    assert r2["free_repeated"] is True
    await api.wait_final(r2["ucaller_id"])
    assert err(await api.get("initRepeat", uid=first["ucaller_id"])) == 12
    info = await api.get("getInfo", uid=first["ucaller_id"])
    assert info["repeated_ucaller_ids"] == [r1["ucaller_id"], r2["ucaller_id"]]
    assert info["repeatable"] is False and info["repeat_times"] == 0


async def test_repeats_expire_after_five_minutes(api: Api, clock: FakeClock) -> None:
    first = await api.get("initCall", phone="79000000002")
    await api.wait_final(first["ucaller_id"])
    clock.advance(300.5)
    assert err(await api.get("initRepeat", uid=first["ucaller_id"])) == 11


async def test_repeat_while_the_call_is_in_progress_is_an_error_13(api: Api) -> None:
    first = await api.get("initCall", phone="79161234567")
    assert err(await api.get("initRepeat", uid=first["ucaller_id"])) == 13


async def test_repeats_are_free(api: Api, clock: FakeClock) -> None:
    first = await api.get("initCall", phone="79161234567")
    await api.wait_final(first["ucaller_id"])
    clock.advance(15)
    rep = await api.get("initRepeat", uid=first["ucaller_id"])
    await api.wait_final(rep["ucaller_id"])
    info = await api.get("getInfo", uid=rep["ucaller_id"])
    assert info["cost"] == 0
    assert (await api.get("getBalance"))["rub_balance"] == pytest.approx(99.7)


async def test_repeat_of_unknown_id_is_error_10(api: Api) -> None:
    assert err(await api.get("initRepeat", uid=424242)) == 10


# -- billing ------------------------------------------------------------------------------


async def test_charge_and_refund_are_ledger_rows(settings: Settings, clock: FakeClock) -> None:
    settings.simulator.outcomes["79161230000"] = "busy"
    async with make_api(settings, clock) as api:
        ok = await api.get("initCall", phone="79161234567")
        busy = await api.get("initCall", phone="79161230000")
        assert (await api.wait_final(ok["ucaller_id"]))["call_status"] == 1
        info = await api.wait_final(busy["ucaller_id"])
        assert info["call_status"] == 0 and info["call_outcome"] == "busy"
        assert info["cost"] == 0.3  # what it was charged; the refund is its own row
        async with api.rt.db.read() as conn:
            rows = (
                await conn.execute(
                    select(ledger.c.kind, ledger.c.amount, ledger.c.authorization_id)
                    .where(ledger.c.account_id == api.account_id)
                    .order_by(ledger.c.id)
                )
            ).all()
        kinds = [(k, amt, aid) for k, amt, aid in rows if k != "topup"]
        assert sorted(kinds) == sorted(
            [
                ("charge", -3000, ok["ucaller_id"]),
                ("charge", -3000, busy["ucaller_id"]),
                ("refund", 3000, busy["ucaller_id"]),
            ]
        )
        assert (await api.get("getBalance"))["rub_balance"] == pytest.approx(99.7)


async def test_test_mode_service_costs_nothing(api: Api) -> None:
    async with api.rt.db.write() as conn:
        await update_service(conn, api.service_id, test_mode=True)
    body = await api.get("initCall", phone="79161234567")
    info = await api.wait_final(body["ucaller_id"])
    assert info["cost"] == 0 and info["is_test"] is True
    async with api.rt.db.read() as conn:
        charges = (
            await conn.execute(
                select(func.count()).select_from(ledger).where(ledger.c.kind == "charge")
            )
        ).scalar()
    assert charges == 0
