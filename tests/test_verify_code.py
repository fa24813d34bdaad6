"""verifyCode (our extension, spec §14): the server checks the code, through the public API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from opencaller.cli.main import app as admin_cli
from opencaller.domain.accounts import update_service
from opencaller.domain.clock import FakeClock
from opencaller.domain.settings import ServiceSettings
from opencaller.storage.tables import accounts, services
from opencaller.telephony.base import InboundCall

from .dashboard_support import new_page
from .support import Api

REACHED = "79000000001"  # test number: always reached, never billed
NOT_REACHED = "79000000002"  # test number: never reached (so a free repeat may follow)


def err(body: dict[str, Any]) -> int:
    assert body["status"] is False, body
    assert isinstance(body["error"], str) and body["error"], body
    return int(body["code"])


async def set_settings(api: Api, **values: Any) -> None:
    async with api.rt.db.write() as conn:
        await update_service(conn, api.service_id, settings=ServiceSettings(**values))


async def start(api: Api, code: str = "1234", phone: str = REACHED) -> int:
    body = await api.get("initCall", phone=phone, code=code)
    assert body["status"] is True, body
    return int(body["ucaller_id"])


async def test_right_code_verifies_and_asking_again_gives_the_same_answer(
    api: Api, clock: FakeClock
) -> None:
    uid = await start(api)
    before = await api.get("getInfo", uid=uid)
    assert before["verified"] is False and before["verified_at"] is None
    clock.advance(30)
    first = await api.get("verifyCode", uid=uid, code="1234")
    assert first == {
        "status": True,
        "ucaller_id": uid,
        "verified": True,
        "verified_at": int(clock.now()),
        "attempts_left": 4,
    }
    clock.advance(5)
    assert await api.get("verifyCode", uid=uid, code="1234") == first
    info = await api.get("getInfo", uid=uid)
    assert info["verified"] is True and info["verified_at"] == first["verified_at"]
    assert info["call_status"] in (-1, 1)  # uCaller's fields are untouched


async def test_wrong_codes_count_down_then_no_attempts_left(api: Api) -> None:
    uid = await start(api)
    for left in (4, 3, 2, 1, 0):
        body = await api.get("verifyCode", uid=uid, code="9999")
        assert err(body) == 60
        assert body["attempts_left"] == left
    # From now on even the right code is refused.
    for code in ("1234", "9999"):
        body = await api.get("verifyCode", uid=uid, code=code)
        assert err(body) == 61
        assert body["attempts_left"] == 0
    info = await api.get("getInfo", uid=uid)
    assert info["verified"] is False and info["verified_at"] is None


async def test_right_code_after_wrong_ones_keeps_the_count(api: Api) -> None:
    uid = await start(api)
    assert (await api.get("verifyCode", uid=uid, code="0000"))["attempts_left"] == 4
    assert (await api.get("verifyCode", uid=uid, code="0001"))["attempts_left"] == 3
    ok = await api.get("verifyCode", uid=uid, code="1234")
    assert ok["verified"] is True and ok["attempts_left"] == 2


async def test_wrong_code_after_verification_is_63(api: Api) -> None:
    uid = await start(api)
    ok = await api.get("verifyCode", uid=uid, code="1234")
    body = await api.get("verifyCode", uid=uid, code="4321")
    assert err(body) == 63
    assert await api.get("verifyCode", uid=uid, code="1234") == ok  # nothing was spent


async def test_code_expires_ten_minutes_after_init_call(api: Api, clock: FakeClock) -> None:
    uid = await start(api)
    clock.advance(599)
    assert (await api.get("verifyCode", uid=uid, code="1111"))["code"] == 60
    clock.advance(2)
    assert err(await api.get("verifyCode", uid=uid, code="1234")) == 62
    assert (await api.get("getInfo", uid=uid))["verified"] is False


async def test_a_verified_authorization_stays_verified_after_the_time(
    api: Api, clock: FakeClock
) -> None:
    uid = await start(api)
    ok = await api.get("verifyCode", uid=uid, code="1234")
    clock.advance(3600)
    assert await api.get("verifyCode", uid=uid, code="1234") == ok
    assert err(await api.get("verifyCode", uid=uid, code="1000")) == 63


async def test_attempts_and_time_are_service_settings(api: Api, clock: FakeClock) -> None:
    await set_settings(api, verify_attempts=2, verify_ttl_s=60)
    uid = await start(api)
    assert (await api.get("verifyCode", uid=uid, code="1"))["attempts_left"] == 1
    assert (await api.get("verifyCode", uid=uid, code="2"))["attempts_left"] == 0
    assert err(await api.get("verifyCode", uid=uid, code="1234")) == 61
    clock.advance(15)
    other = await start(api, phone=NOT_REACHED)
    clock.advance(61)
    assert err(await api.get("verifyCode", uid=other, code="1234")) == 62


async def test_the_admin_cli_sets_attempts_and_time(
    api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCALLER_DATABASE_URL", api.rt.settings.database_url)
    args = ["service", "set", str(api.service_id), "--verify-attempts", "1", "--verify-ttl", "30"]
    done = await asyncio.to_thread(CliRunner().invoke, admin_cli, args)
    assert done.exit_code == 0, done.output
    uid = await start(api)
    assert (await api.get("verifyCode", uid=uid, code="0000"))["attempts_left"] == 0
    assert err(await api.get("verifyCode", uid=uid, code="1234")) == 61
    clock.advance(15)
    other = await start(api, phone=NOT_REACHED)
    clock.advance(31)
    assert err(await api.get("verifyCode", uid=other, code="1234")) == 62
    refused = await asyncio.to_thread(
        CliRunner().invoke,
        admin_cli,
        ["service", "set", str(api.service_id), "--verify-attempts", "0"],
    )
    assert refused.exit_code != 0 and "verify-attempts" in refused.output


async def test_saving_the_dashboard_settings_keeps_the_verify_settings(api: Api) -> None:
    await set_settings(api, verify_attempts=1)
    page = new_page(api.client)
    await page.sign_up()
    async with api.rt.db.write() as conn:  # the customer's own service, on their account
        await conn.execute(
            update(services)
            .where(services.c.id == api.service_id)
            .values(
                account_id=select(accounts.c.id)
                .order_by(accounts.c.id.desc())
                .limit(1)
                .scalar_subquery()
            )
        )
    r = await page.post(
        f"/dashboard/services/{api.service_id}/settings",
        {"allowed_countries": "", "hourly_limit": "", "ip_allowlist": "", "rps_limit": "40"},
    )
    assert r.status_code == 303, r.text
    uid = await start(api)
    assert (await api.get("verifyCode", uid=uid, code="0000"))["attempts_left"] == 0


async def test_unknown_or_foreign_id_is_error_10(api: Api) -> None:
    assert err(await api.get("verifyCode", uid=424242, code="1234")) == 10
    sid, key, _ = await api.new_service()
    r = await api.client.get(
        "/v1.0/initCall",
        params={"service_id": sid, "key": key, "phone": REACHED, "code": "1234"},
    )
    foreign = r.json()["ucaller_id"]
    assert err(await api.get("verifyCode", uid=foreign, code="1234")) == 10
    # The other service's counter was not touched.
    r = await api.client.get(
        "/v1.0/verifyCode",
        params={"service_id": sid, "key": key, "uid": foreign, "code": "1234"},
    )
    assert r.json()["attempts_left"] == 4


@pytest.mark.parametrize(
    "params",
    [
        {"code": "1234"},  # no uid
        {"uid": "abc", "code": "1234"},
        {"uid": "UID"},  # no code
        {"uid": "UID", "code": ""},
        {"uid": "UID", "code": "12345"},
        {"uid": "UID", "code": "12a4"},
        {"uid": "UID", "code": "-123"},
    ],
)
async def test_bad_arguments_are_error_2_and_cost_no_attempt(
    api: Api, params: dict[str, str]
) -> None:
    uid = await start(api)
    params = {k: str(uid) if v == "UID" else v for k, v in params.items()}
    assert err(await api.get("verifyCode", **params)) == 2
    assert (await api.get("verifyCode", uid=uid, code="0000"))["attempts_left"] == 4


async def test_code_is_read_like_init_calls(api: Api) -> None:
    uid = await start(api, code="0007")
    # JSON integer, Bearer auth, `ucaller_id` instead of `uid`: "7" is "0007".
    body = await api.post_json("verifyCode", {"ucaller_id": uid, "code": 7})
    assert body["verified"] is True and body["ucaller_id"] == uid


@pytest.mark.parametrize("path", ["/v1.0/verifyCode", "/verifyCode", "/v1.0/verifycode/"])
async def test_reachable_like_every_method(api: Api, path: str) -> None:
    uid = await start(api)
    r = await api.client.post(path, data={**api.creds, "uid": str(uid), "code": "1234"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["verified"] is True


async def test_repeats_share_the_code_the_counter_and_the_verification(api: Api) -> None:
    first = await start(api, phone=NOT_REACHED)
    await api.wait_final(first)
    repeat = (await api.get("initRepeat", uid=first))["ucaller_id"]
    await api.wait_final(repeat)
    assert (await api.get("verifyCode", uid=first, code="0000"))["attempts_left"] == 4
    assert (await api.get("verifyCode", uid=repeat, code="0000"))["attempts_left"] == 3
    ok = await api.get("verifyCode", uid=repeat, code="1234")
    assert ok["ucaller_id"] == repeat and ok["attempts_left"] == 2
    for uid in (first, repeat):
        info = await api.get("getInfo", uid=uid)
        assert info["verified"] is True and info["verified_at"] == ok["verified_at"]
    on_first = await api.get("verifyCode", uid=first, code="1234")
    assert on_first == {**ok, "ucaller_id": first}
    assert err(await api.get("verifyCode", uid=repeat, code="0000")) == 63


async def test_a_repeat_cannot_reset_the_attempts(api: Api) -> None:
    first = await start(api, phone=NOT_REACHED)
    for _ in range(5):
        await api.get("verifyCode", uid=first, code="0000")
    await api.wait_final(first)
    repeat = (await api.get("initRepeat", uid=first))["ucaller_id"]
    assert err(await api.get("verifyCode", uid=repeat, code="1234")) == 61


async def test_simultaneous_wrong_guesses_check_exactly_five(api: Api) -> None:
    uid = await start(api)
    answers = await asyncio.gather(
        *(api.get("verifyCode", uid=uid, code=f"{n:04d}") for n in range(20))
    )
    codes = sorted(err(b) for b in answers)
    assert codes == [60] * 5 + [61] * 15
    left = sorted(b["attempts_left"] for b in answers if b["code"] == 60)
    assert left == [0, 1, 2, 3, 4]
    assert err(await api.get("verifyCode", uid=uid, code="1234")) == 61


async def test_simultaneous_right_codes_all_succeed_alike(api: Api) -> None:
    uid = await start(api)
    answers = await asyncio.gather(*(api.get("verifyCode", uid=uid, code="1234") for _ in range(8)))
    assert all(b["verified"] is True for b in answers), answers
    assert len({b["verified_at"] for b in answers}) == 1
    assert (await api.get("getInfo", uid=uid))["verified_at"] == answers[0]["verified_at"]


async def test_the_inbound_call_verifies_the_authorization(api: Api, clock: FakeClock) -> None:
    waiting = await api.get(
        "inboundCallWaiting", phone="+79161234567", callback_url="https://example.com/hook"
    )
    uid = waiting["ucaller_id"]
    number = waiting["confirmation_number"]
    # No code verifies an inbound verification: its "code" is part of the public number.
    assert err(await api.get("verifyCode", uid=uid, code=number[-4:])) == 2
    assert (await api.get("getInfo", uid=uid))["verified"] is False
    clock.advance(20)
    # What the SIP stack reports when the subscriber dials the number (tests/telephony
    # test_api_sip.py drives the same path with SIPp).
    await api.rt.inbound.on_call(InboundCall(caller="79161234567", called=number, at=clock.now()))
    info = await api.get("getInfo", uid=uid)
    assert info["verified"] is True and info["verified_at"] == int(clock.now())


# -- idempotency (`unique`, as on initCall) ----------------------------------------------


async def test_same_key_same_arguments_replays_the_first_answer(api: Api) -> None:
    uid = await start(api)
    first = await api.get("verifyCode", uid=uid, code="0000", unique="k-1")
    assert err(first) == 60 and first["attempts_left"] == 4
    assert await api.get("verifyCode", uid=uid, code=0, unique="k-1") == first  # no attempt spent
    assert (await api.get("verifyCode", uid=uid, code="0001"))["attempts_left"] == 3
    ok = await api.get("verifyCode", uid=uid, code="1234", unique="k-2")
    assert ok["verified"] is True and ok["attempts_left"] == 2
    assert (
        await api.post_json("verifyCode", {"ucaller_id": uid, "code": 1234, "unique": "k-2"}) == ok
    )


async def test_same_key_other_arguments_is_error_2(api: Api) -> None:
    uid = await start(api)
    await api.get("verifyCode", uid=uid, code="0000", unique="k-1")
    assert err(await api.get("verifyCode", uid=uid, code="0001", unique="k-1")) == 2
    other = await start(api, phone=NOT_REACHED)
    assert err(await api.get("verifyCode", uid=other, code="0000", unique="k-1")) == 2
    assert (await api.get("verifyCode", uid=uid, code="0002"))["attempts_left"] == 3


async def test_simultaneous_requests_with_one_key_are_checked_once(api: Api) -> None:
    uid = await start(api)
    answers = await asyncio.gather(
        *(api.get("verifyCode", uid=uid, code="0000", unique="same") for _ in range(10))
    )
    assert all(b == answers[0] for b in answers), answers
    assert err(answers[0]) == 60 and answers[0]["attempts_left"] == 4
    assert (await api.get("verifyCode", uid=uid, code="0001"))["attempts_left"] == 3


async def test_an_overlong_key_is_error_2(api: Api) -> None:
    uid = await start(api)
    assert err(await api.get("verifyCode", uid=uid, code="1234", unique="x" * 65)) == 2


async def test_init_repeat_with_a_key_places_one_repeat(api: Api) -> None:
    first = await start(api, phone=NOT_REACHED)
    await api.wait_final(first)
    answers = await asyncio.gather(
        *(api.get("initRepeat", uid=first, unique="r-1") for _ in range(5))
    )
    assert all(b == answers[0] for b in answers), answers
    assert answers[0]["free_repeated"] is True
    repeat = answers[0]["ucaller_id"]
    await api.wait_final(repeat)
    assert await api.get("initRepeat", uid=first, unique="r-1") == answers[0]
    info = await api.get("getInfo", uid=first)
    assert info["repeated_ucaller_ids"] == [repeat]
    assert err(await api.get("initRepeat", uid=first, unique="r-1", voice="true")) == 2
    # The repeat shares the original's code check.
    assert (await api.get("verifyCode", uid=repeat, code="1234"))["verified"] is True
