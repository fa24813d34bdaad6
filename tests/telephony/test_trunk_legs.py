"""Telephony as real trunks expect it, through the public API with SIPp as the carrier.

Legs given up on at failover are ended on the wire when the trunk speaks late, every INVITE
offers SDP (a late offer is answered in the ACK), the trunk's cps holds in every second, and
the record keeps the SIP code that says what happened.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from opencaller.config import Settings
from opencaller.domain.clock import Clock
from opencaller.telephony.base import CallReport, Outcome
from opencaller.telephony.sip.limits import CallRateLimiter
from opencaller.telephony.sip.provider import SipProvider, combine_legs

from ..support import Api, add_customer, make_api
from .sipp import Sipp, SippRun, render

pytestmark = pytest.mark.sip

FLASH_PRICE = 0.3


def trunk(name: str, port: int, **kw: Any) -> dict[str, Any]:
    base = {"name": name, "host": "127.0.0.1", "port": port, "cps": 100, "ring_hold_s": 0.2}
    return {**base, **kw}


def sip_settings(settings: Settings, trunks: list[dict[str, Any]], **top: Any) -> Settings:
    sip = {
        "bind_ip": "127.0.0.1",
        "local_ip": "127.0.0.1",
        "port": 0,
        "rtp_port_min": 45000,
        "rtp_port_max": 45999,
        "trunks": trunks,
        "caller_ids": {"prefixes": ["7900555"]},
        **top,
    }
    return settings.model_copy(update={"provider": "sip", "sip": sip})


@asynccontextmanager
async def sip_api(
    settings: Settings, trunks: list[dict[str, Any]], **top: Any
) -> AsyncIterator[Api]:
    async with make_api(sip_settings(settings, trunks, **top), Clock()) as api:
        yield api


def provider_of(api: Api) -> SipProvider:
    p = api.rt.provider
    assert isinstance(p, SipProvider)
    return p


async def until(check: Callable[[], bool], within_s: float = 40.0) -> None:
    """Wait until ``check()`` holds (a synchronisation point, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while not check():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.05)


def kinds(run: SippRun) -> list[str]:
    return [r["kind"] for r in run.lines()]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- 1. the leg abandoned at failover -------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "wire"),
    [
        # A rings after we moved on: CANCEL it, so the subscriber is not alerted twice.
        ("uas_late_ring.xml", ["INVITE", "LATE180", "CANCEL", "ACK"]),
        # A answers after we moved on: ACK it and hang up at once.
        ("uas_late_answer.xml", ["INVITE", "LATE200", "ACK", "BYE"]),
    ],
)
async def test_a_trunk_that_speaks_after_failover_is_ended_on_the_wire(
    sipp: Sipp, settings: Settings, scenario: str, wire: list[str]
) -> None:
    slow = sipp.start(scenario, calls=1)
    good = sipp.start("uas_ring_cancel.xml", calls=1)
    trunks = [trunk("a", slow.port, progress_timeout_s=1.0), trunk("b", good.port)]
    async with sip_api(settings, trunks) as api:
        p = provider_of(api)
        body = await api.get("initCall", phone="79161234567", code="4719")
        info = await api.wait_final(body["ucaller_id"], within_s=30)
        # The call went on without waiting for A (silent for 10 s): A's leg is kept apart.
        assert len(p.legs) == 1
        await asyncio.to_thread(good.assert_ok)
        await asyncio.to_thread(slow.assert_ok, 60)
        await until(lambda: len(p.legs) == 0)
        assert api.rt.dispatcher is not None and api.rt.dispatcher.inflight == 0
    assert kinds(slow) == wire
    # The outcome is B's: it rang, and A's late word changes nothing.
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (1, "delivered", 180)
    assert info["sip_reason"].startswith("a: no response from the trunk; b: 180")
    assert len(good.lines("CANCEL")) == 1


async def test_legs_still_waiting_stop_with_the_service(sipp: Sipp, settings: Settings) -> None:
    silent = sipp.start("uas_silent.xml", calls=1)
    good = sipp.start("uas_ring_cancel.xml", calls=1)
    trunks = [trunk("a", silent.port, progress_timeout_s=1.0), trunk("b", good.port)]
    async with sip_api(settings, trunks) as api:
        p = provider_of(api)
        body = await api.get("initCall", phone="79161234567", code="4719")
        info = await api.wait_final(body["ucaller_id"], within_s=30)
        assert len(p.legs) == 1  # A has not answered yet, and Timer B has not run out
        flash_port = p._flash_port
        assert not port_is_free(flash_port)  # the port flash calls offer is really ours
    silent.kill()
    await asyncio.to_thread(good.assert_ok)
    assert info["call_outcome"] == "delivered"
    assert len(p.legs) == 0
    # Nothing of ours is retransmitting any more: A's INVITE was abandoned at shutdown.
    assert all(getattr(tx, "final", None) is not None for tx in p.transport.transactions.values())
    assert port_is_free(flash_port)  # released at shutdown


# --- 2. SDP on every INVITE -------------------------------------------------------------------


async def test_a_flash_invite_offers_audio_on_a_port_of_ours(
    sipp: Sipp, settings: Settings
) -> None:
    far = sipp.start("uas_offer_ring.xml", calls=1)
    async with sip_api(settings, [trunk("main", far.port)]) as api:
        body = await api.get("initCall", phone="79161234567", code="4719")
        info = await api.wait_final(body["ucaller_id"], within_s=20)
        flash_port = provider_of(api)._flash_port
    await asyncio.to_thread(far.assert_ok)
    assert (info["call_status"], info["sip_code"]) == (1, 180)
    [invite] = far.lines("INVITE")
    assert (invite["offer_ip"], invite["first_pt"], invite["second_pt"]) == ("127.0.0.1", "0", "8")
    assert invite["offer_port"] == str(flash_port)
    assert 45000 <= flash_port <= 45999  # from the configured RTP range


async def test_a_late_offer_in_the_answer_is_answered_in_the_ack(
    sipp: Sipp, settings: Settings
) -> None:
    far = sipp.start("uas_late_offer.xml", calls=1)
    trunks = [trunk("main", far.port, offer_sdp=False)]
    async with sip_api(settings, trunks) as api:
        body = await api.get("initCall", phone="79161234567", code="4719")
        info = await api.wait_final(body["ucaller_id"], within_s=20)
        flash_port = provider_of(api)._flash_port
    await asyncio.to_thread(far.assert_ok)
    [invite] = far.lines("INVITE")
    assert invite["offer_port"] == ""  # offer_sdp = false: no SDP in the INVITE
    [ack] = far.lines("ACK")
    # The offer preferred PCMA (8), then PCMU: the answer takes the first we support.
    assert (ack["answer_ip"], ack["answer_port"], ack["answer_pt"]) == (
        "127.0.0.1",
        str(flash_port),
        "8",
    )
    assert len(far.lines("BYE")) == 1
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (1, "answered", 200)


async def test_tel_uri_writes_the_asserted_identity_only(sipp: Sipp, settings: Settings) -> None:
    far = sipp.start("uas_offer_ring.xml", calls=1)
    trunks = [trunk("main", far.port, caller_id={"tel_uri": True})]
    async with sip_api(settings, trunks) as api:
        body = await api.get("initCall", phone="79161234567", code="4719")
        await api.wait_final(body["ucaller_id"], within_s=20)
    await asyncio.to_thread(far.assert_ok)
    [invite] = far.lines("INVITE")
    assert (invite["from_scheme"], invite["pai_scheme"]) == ("sip", "tel")


# --- 3. cps in every second ------------------------------------------------------------------


async def test_no_second_carries_more_calls_than_the_trunk_cps(
    sipp: Sipp, settings: Settings
) -> None:
    n, cps = 150, 50
    far = sipp.start("uas_count.xml", calls=n)
    async with sip_api(settings, [trunk("main", far.port, cps=cps, max_in_flight=n)]) as api:
        # Several services, so the API's own per-second limit is not what paces the calls.
        services = [await add_customer(api.rt) for _ in range(5)]

        async def init(i: int) -> int:
            sid, key, _ = services[i % len(services)]
            r = await api.client.get(
                "/v1.0/initCall",
                params={"service_id": sid, "key": key, "phone": f"7916{i:07d}", "code": "1234"},
            )
            body = r.json()
            assert body["status"] is True, body
            return int(body["ucaller_id"])

        uids = await asyncio.gather(*(init(i) for i in range(n)))
        await asyncio.to_thread(far.assert_ok, 120)
        sid, key, _ = services[(n - 1) % len(services)]
        for _ in range(300):
            r = await api.client.get(
                "/v1.0/getInfo", params={"service_id": sid, "key": key, "uid": uids[-1]}
            )
            last = r.json()
            if last.get("call_status", -1) != -1:
                break
            await asyncio.sleep(0.1)
    assert (last["call_status"], last["call_outcome"], last["sip_code"]) == (0, "busy", 486)
    arrivals = sorted(int(r["t_ms"]) for r in far.lines("INVITE"))
    assert len(arrivals) == n
    # At the carrier, by its clock: any window of one second holds at most `cps` INVITEs.
    busiest = max(sum(1 for t in arrivals if s <= t < s + 1000) for s in arrivals)
    assert busiest <= cps


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.now += s
        await asyncio.sleep(0)


@pytest.mark.parametrize(("rate", "per_second"), [(50, 50), (100, 100), (2.5, 2), (1, 1)])
async def test_the_limiter_never_grants_more_than_the_rate_in_any_second(
    rate: float, per_second: int
) -> None:
    t = FakeTime()
    limiter = CallRateLimiter(rate, clock=t.clock, sleep=t.sleep)
    grants: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        grants.append(t.now)

    await asyncio.gather(*(call() for _ in range(int(rate * 5) + 3)))
    for g in grants:
        assert sum(1 for x in grants if g <= x < g + 1.0) <= per_second
    assert grants == sorted(grants)
    # Spaced evenly, not in bursts: no two grants closer than 1/rate.
    assert min(b - a for a, b in itertools.pairwise(grants)) >= 1 / rate - 1e-9


async def test_the_limiter_allows_one_call_per_period_below_one_cps() -> None:
    t = FakeTime()
    limiter = CallRateLimiter(0.5, clock=t.clock, sleep=t.sleep)
    grants = []
    for _ in range(4):
        await limiter.acquire()
        grants.append(t.now)
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(grants))


async def test_the_limiter_counts_a_late_wakeup_from_when_it_happened() -> None:
    # The grant is recorded when the waiter actually went, so a late one cannot let the
    # next calls crowd into the same second.
    t = FakeTime()
    late = {"by": 0.3}

    async def oversleeping(s: float) -> None:
        t.now += s + late["by"]
        late["by"] = 0.0
        await asyncio.sleep(0)

    limiter = CallRateLimiter(10, clock=t.clock, sleep=oversleeping)
    grants = []
    for _ in range(30):
        await limiter.acquire()
        grants.append(t.now)
    for g in grants:
        assert sum(1 for x in grants if g <= x < g + 1.0) <= 10


async def test_a_waiter_cancelled_in_the_queue_takes_no_slot() -> None:
    t = FakeTime()
    limiter = CallRateLimiter(1, clock=t.clock, sleep=t.sleep)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()  # the second of this period is taken
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert len(limiter._grants) == 1


# --- 4. what the record keeps ---------------------------------------------------------------


async def test_503_then_silence_keeps_the_503(
    sipp: Sipp, settings: Settings, tmp_path: Path
) -> None:
    sf = render(
        "uas_reject.tmpl.xml",
        tmp_path / "r503.xml",
        CODE="503",
        REASON="Service Unavailable",
        CAUSE="41",
    )
    failing = sipp.start(sf, calls=1)
    silent = sipp.start("uas_silent.xml", calls=1)
    trunks = [trunk("a", failing.port), trunk("b", silent.port, progress_timeout_s=1.0)]
    async with sip_api(settings, trunks) as api:
        body = await api.get("initCall", phone="79161234567", code="4719")
        info = await api.wait_final(body["ucaller_id"], within_s=30)
        balance = await api.get("getBalance")
    await asyncio.to_thread(failing.assert_ok)
    # B's leg was abandoned at shutdown: SIPp ends 8 s after our last retransmission.
    await asyncio.to_thread(silent.assert_ok, 60)
    assert len(silent.lines("INVITE")) == 1  # B was tried, and said nothing
    assert (info["call_status"], info["call_outcome"]) == (0, "network_error")
    assert info["sip_code"] == 503
    assert info["sip_reason"] == "a: 503 Service Unavailable; b: no response from the trunk"
    assert balance["rub_balance"] == 100  # not reached: refunded


async def test_a_voice_call_that_rang_unanswered_records_the_ringing(
    sipp: Sipp, settings: Settings
) -> None:
    far = sipp.start("uas_ring_cancel.xml", calls=1)
    trunks = [trunk("main", far.port, answer_timeout_s=1.0, progress_timeout_s=1.0)]
    async with sip_api(settings, trunks) as api:
        body = await api.post_json(
            "initCall", {"phone": 79161234567, "code": "4719", "voice": True}
        )
        info = await api.wait_final(body["ucaller_id"], within_s=60)
    await asyncio.to_thread(far.assert_ok)
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (0, "no_answer", 180)
    assert info["sip_reason"] == "180 then not answered in time"
    assert len(far.lines("CANCEL")) == 1


def test_combining_legs_keeps_the_last_leg_that_answered() -> None:
    a = CallReport(Outcome.NETWORK_ERROR, sip_code=503, reason="503 Oops", q850_cause=41)
    b = CallReport(Outcome.NETWORK_ERROR, reason="no response from the trunk", started_at=5.0)
    c = CallReport(Outcome.BUSY, sip_code=486, reason="486 Busy Here", q850_cause=17)
    both = combine_legs([("a", a), ("b", b)])
    assert (both.outcome, both.sip_code, both.q850_cause) == (Outcome.NETWORK_ERROR, 503, 41)
    assert both.started_at == a.started_at
    decided = combine_legs([("a", a), ("c", c)])
    assert (decided.outcome, decided.sip_code, decided.q850_cause) == (Outcome.BUSY, 486, 17)
    assert decided.reason == "a: 503 Oops; c: 486 Busy Here"
    assert combine_legs([("b", b)]) is b  # one trunk: its report as it is
