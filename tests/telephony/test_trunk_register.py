"""Trunks that authenticate by REGISTER, with SIPp as the registrar: calls go out only while
registered, a restarted registrar is registered with again, digest challenges are answered,
and the state shows in /metrics and the trunk view."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY, generate_latest

from opencaller.cli.sip_status import status_lines
from opencaller.config import Settings
from opencaller.telephony.base import CallKind, CallRequest, Outcome
from opencaller.telephony.sip.provider import SipProvider

from .helpers import provider, trunk, until
from .sipp import Sipp, SippRun
from .test_trunk_legs import provider_of, sip_api

pytestmark = pytest.mark.sip


def flash(n: int, code: str = "4719") -> CallRequest:
    return CallRequest(ucaller_id=n, destination="79161234567", code=code, kind=CallKind.FLASH)


def registered(p: SipProvider, name: str) -> bool:
    return next(s for s in p.trunk_status() if s.name == name).registered is True


def scraped(line: str) -> bool:
    return line in generate_latest(REGISTRY).decode()


# SIPp keeps a finished call's Call-ID for 33 s and absorbs what comes on it; a refresh
# reuses the Call-ID of the first REGISTER (RFC 3261 §10.2.4), so forget it at once.
FORGET = ["-deadcall_wait", "1"]


def registrar(sipp: Sipp, expires: int, *, port: int | None = None) -> SippRun:
    keys = {"expires": str(expires)}
    return sipp.start("uas_register.xml", calls=10_000, keys=keys, port=port, extra=FORGET)


async def test_calls_go_out_after_registering_refresh_and_unregister(sipp: Sipp) -> None:
    reg = registrar(sipp, expires=2)
    far = sipp.start("uas_ring_cancel.xml", calls=1)
    p = provider(
        trunk(
            "reg-a",
            far.port,
            registration=True,
            registrar=f"127.0.0.1:{reg.port}",
            username="opencaller-a",
            register_expires_s=600,
        )
    )
    await p.start()
    try:
        await until(lambda: registered(p, "reg-a"))
        assert scraped('opencaller_sip_trunk_registered{trunk="reg-a"} 1.0')
        assert scraped('opencaller_sip_trunk_register_last_code{trunk="reg-a"} 200.0')
        # The operator's line (`opencaller sip-status URL` reads the same text).
        lines = status_lines(generate_latest(REGISTRY).decode())
        assert any(x.startswith("trunk reg-a: registered (last 200) for ") for x in lines)
        rep = await p.place_call(flash(1))
        assert rep.outcome is Outcome.DELIVERED, rep
        # Granted 2 s: refreshed before it runs out, on the same Call-ID.
        await until(lambda: len(reg.lines("REGISTER")) >= 3)
    finally:
        await p.close()
    far.assert_ok()
    lines = reg.lines("REGISTER")
    assert lines[0]["asked"] == "600"
    assert lines[0]["contact"] == f"opencaller-a@127.0.0.1:{p.port}"
    assert lines[0]["via_rport"] == "rport"
    assert len({r["call-id"] for r in lines}) == 1
    assert [int(r["cseq"]) for r in lines] == sorted(int(r["cseq"]) for r in lines)
    assert lines[-1]["asked"] == "0"  # unregistered at shutdown
    assert scraped('opencaller_sip_trunk_registered{trunk="reg-a"} 0.0')


async def test_registrar_restart_stops_calls_until_registered_again(sipp: Sipp) -> None:
    reg = registrar(sipp, expires=1)
    far = sipp.start("uas_ring_cancel.xml", calls=2)
    p = provider(
        trunk(
            "reg-b",
            far.port,
            registration=True,
            registrar=f"127.0.0.1:{reg.port}",
            username="opencaller-b",
            register_retry_min_s=0.2,
            register_retry_max_s=0.5,
        ),
        t1_s=0.05,  # Timer F (64 x T1) ends an unanswered REGISTER in 3.2 s
    )
    await p.start()
    try:
        await until(lambda: registered(p, "reg-b"))
        assert (await p.place_call(flash(1))).outcome is Outcome.DELIVERED
        reg.kill()
        await until(lambda: not registered(p, "reg-b"))
        status = p.trunk_status()[0]
        assert status.usable is False
        assert status.why_not is not None and "not registered" in status.why_not
        refused = await p.place_call(flash(2))
        assert refused.outcome is Outcome.NETWORK_ERROR
        assert "reg-b: not registered (no answer from the registrar)" in refused.reason
        registrar(sipp, expires=1, port=reg.port)  # the registrar is back, empty
        await until(lambda: registered(p, "reg-b"))
        rep = await p.place_call(flash(3))
        assert rep.outcome is Outcome.DELIVERED, rep
    finally:
        await p.close()
    far.assert_ok()
    assert len(far.lines("INVITE")) == 2  # the refused call never reached the trunk


@pytest.mark.parametrize(("password", "ok"), [("s3cret", True), ("wrong", False)])
async def test_digest_challenge_to_register_is_answered(
    sipp: Sipp, password: str, ok: bool
) -> None:
    reg = sipp.start(
        "uas_register_auth.xml",
        calls=10_000,
        keys={"expires": "600", "user": "trunkuser", "pass": "s3cret"},
        extra=FORGET,
    )
    name = f"reg-auth-{ok}"
    p = provider(
        trunk(
            name,
            reg.port,
            registration=True,
            username="trunkuser",
            password=password,
            register_retry_min_s=30,
        )
    )
    await p.start()
    try:
        await until(lambda: len(reg.lines("AUTH")) >= 1)
        await until(lambda: p.trunk_status()[0].register_code is not None)
        status = p.trunk_status()[0]
    finally:
        await p.close()
    assert reg.lines("AUTH")[0]["ok"] == ("true" if ok else "false")
    assert len(reg.lines("CHALLENGE")) >= 1
    if ok:
        assert status.registered is True and status.usable
        assert status.register_code == 200
    else:
        assert status.registered is False and status.register_code == 403
        assert status.why_not == "not registered (403 Forbidden)"
        assert scraped(f'opencaller_sip_trunk_register_last_code{{trunk="{name}"}} 403.0')


async def test_through_the_api_calls_wait_for_registration_again(
    sipp: Sipp, settings: Settings
) -> None:
    reg = registrar(sipp, expires=1)
    far = sipp.start("uas_ring_cancel.xml", calls=2)
    trunks = [
        trunk(
            "api-reg",
            far.port,
            registration=True,
            registrar=f"127.0.0.1:{reg.port}",
            username="opencaller-api",
            register_retry_min_s=0.2,
            register_retry_max_s=0.5,
        )
    ]
    async with sip_api(settings, trunks, t1_s=0.05) as api:
        p = provider_of(api)
        assert registered(p, "api-reg")  # start waited for the first registration
        first = await api.get("initCall", phone="79161234567", code="4719")
        info = await api.wait_final(first["ucaller_id"], within_s=30)
        outcome = (info["call_status"], info["call_outcome"], info["sip_code"])
        assert outcome == (1, "delivered", 180)

        reg.kill()
        await until(lambda: not registered(p, "api-reg"))
        second = await api.get("initCall", phone="79161234568", code="4720")
        info = await api.wait_final(second["ucaller_id"], within_s=30)
        assert (info["call_status"], info["call_outcome"]) == (0, "network_error")
        assert info["sip_reason"] == (
            "no usable trunk: api-reg: not registered (no answer from the registrar)"
        )

        registrar(sipp, expires=1, port=reg.port)
        await until(lambda: registered(p, "api-reg"))
        third = await api.get("initCall", phone="79161234569", code="4721")
        info = await api.wait_final(third["ucaller_id"], within_s=30)
        assert (info["call_status"], info["call_outcome"]) == (1, "delivered")
    await asyncio.to_thread(far.assert_ok)
    assert [r["from_num"][-4:] for r in far.lines("INVITE")] == ["4719", "4721"]
