"""Whatever ends a call ends it on the wire: the call deadline, shutdown, a hung espeak-ng.

SIPp is the far end of the trunk; calls go through the public API with the SIP provider.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from opencaller.config import Settings
from opencaller.domain.clock import Clock
from opencaller.storage.tables import authorizations
from opencaller.telephony.base import (
    CallKind,
    CallReport,
    CallRequest,
    EventSink,
    InboundHandler,
    Outcome,
)
from opencaller.telephony.sip.provider import DEADLINE_MARGIN_S, SipProvider

from ..support import Api, make_api
from . import helpers
from .sipp import Sipp

pytestmark = pytest.mark.sip

FLASH_PRICE = 0.3
VOICE_CALL = {"phone": 79161234567, "code": "4719", "voice": True}


def trunk(name: str, port: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": port, "cps": 100, **kw}


def sip_settings(settings: Settings, trunks: list[dict[str, Any]], **top: Any) -> Settings:
    sip = {
        "bind_ip": "127.0.0.1",
        "local_ip": "127.0.0.1",
        "port": 0,
        "rtp_port_min": 44000,
        "rtp_port_max": 44999,
        "trunks": trunks,
        "caller_ids": {"prefixes": ["7900555"]},
    }
    return settings.model_copy(update={"provider": "sip", "sip": sip, **top})


@asynccontextmanager
async def sip_api(
    settings: Settings, trunks: list[dict[str, Any]], **top: Any
) -> AsyncIterator[Api]:
    async with make_api(sip_settings(settings, trunks, **top), Clock()) as api:
        yield api


def sip_provider(api: Api) -> SipProvider:
    provider = api.rt.provider
    assert isinstance(provider, SipProvider)
    return provider


async def row(api: Api, uid: int) -> dict[str, Any]:
    a = authorizations.c
    async with api.rt.db.read() as conn:
        r = (
            await conn.execute(
                select(a.dispatch_state, a.lease_until, a.outcome).where(a.id == uid)
            )
        ).one()
    return dict(r._mapping)


def call_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("call-") and not t.done()]


async def until(check: Any, within_s: float = 20.0) -> None:
    """Wait until ``check()`` is true (a synchronisation point, not an assertion on time)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while not check():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.05)


async def test_a_flash_call_ringing_past_its_deadline_is_cancelled(
    sipp: Sipp, settings: Settings
) -> None:
    # The trunk would hold the ringing phone for ten minutes; the call's deadline is shorter.
    far = sipp.start("uas_ring_cancel.xml", calls=1)
    trunks = [trunk("main", far.port, ring_hold_s=600, max_call_s=1)]
    async with sip_api(settings, trunks) as api:
        body = await api.get("initCall", phone="79161234567", code="4719")
        uid = body["ucaller_id"]
        info = await api.wait_final(uid, within_s=30)
        stored = await row(api, uid)
        balance = await api.get("getBalance")
        assert call_tasks() == []
        assert api.rt.dispatcher is not None and api.rt.dispatcher.inflight == 0
    await asyncio.to_thread(far.assert_ok)
    # The phone rang: a delivered flash call, charged as one, and ended on the wire.
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (1, "delivered", 180)
    assert "deadline" in info["sip_reason"]
    assert stored == {"dispatch_state": "done", "lease_until": None, "outcome": "delivered"}
    assert len(far.lines("CANCEL")) == 1
    assert balance["rub_balance"] == pytest.approx(100 - FLASH_PRICE)


async def test_a_voice_call_to_a_trunk_gone_deaf_after_ringing_ends_at_its_deadline(
    sipp: Sipp, settings: Settings
) -> None:
    # 180, then nothing at all: not even our CANCEL is answered.
    far = sipp.start("uas_ring_deaf.xml", calls=1)
    trunks = [trunk("main", far.port, answer_timeout_s=600, max_call_s=1)]
    # The prompt is synthesised first (real espeak-ng): its timeout is part of the deadline.
    async with sip_api(settings, trunks, espeak_timeout_s=15) as api:
        body = await api.post_json("initCall", VOICE_CALL)
        uid = body["ucaller_id"]
        info = await api.wait_final(uid, within_s=40)
        stored = await row(api, uid)
        balance = await api.get("getBalance")
        provider = sip_provider(api)
        assert call_tasks() == []
        # The call's RTP socket is closed; the port flash calls offer stays bound.
        assert provider.rtp_ports._used == {provider._flash_port}
        # Given up on the far end: nothing of ours keeps retransmitting.
        assert list(provider.transport.transactions) == []
    await asyncio.to_thread(far.assert_ok)
    assert (info["call_status"], info["call_outcome"]) == (0, "no_answer")
    assert stored["dispatch_state"] == "done" and stored["lease_until"] is None
    assert len(far.lines("CANCEL")) == 1
    assert balance["rub_balance"] == 100  # rang but never answered: refunded


async def test_a_trunk_that_never_answers_ends_at_the_deadline(
    sipp: Sipp, settings: Settings
) -> None:
    far = sipp.start("uas_silent.xml", calls=1)
    trunks = [trunk("main", far.port, progress_timeout_s=600, max_call_s=1)]
    async with sip_api(settings, trunks) as api:
        body = await api.get("initCall", phone="79161234567", code="4719")
        uid = body["ucaller_id"]
        info = await api.wait_final(uid, within_s=30)
        stored = await row(api, uid)
        balance = await api.get("getBalance")
        provider = sip_provider(api)
        assert call_tasks() == []
        assert list(provider.transport.transactions) == []  # the INVITE is no longer resent
    await asyncio.to_thread(far.assert_ok)
    # Nothing came back, so there was nothing to CANCEL (RFC 3261 §9.1): the trunk failed.
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (
        0,
        "network_error",
        None,
    )
    assert stored["dispatch_state"] == "done" and stored["lease_until"] is None
    assert len(far.lines("INVITE")) == 1
    assert balance["rub_balance"] == 100


class RtpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets += 1


async def test_shutdown_cancels_ringing_calls_and_hangs_up_answered_ones(
    sipp: Sipp, settings: Settings
) -> None:
    loop = asyncio.get_running_loop()
    rtp, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
    ringing = sipp.start("uas_ring_cancel.xml", calls=2)
    answering = sipp.start(
        "uas_answer.xml", calls=1, keys={"rtp_port": str(rtp.get_extra_info("sockname")[1])}
    )
    trunks = [
        trunk("ring", ringing.port, prefixes=["7916"], ring_hold_s=600),
        trunk("answer", answering.port, prefixes=["7926"]),
    ]
    top: dict[str, Any] = {"drain_s": 0.2, "lease_s": 1.0}
    try:
        async with sip_api(settings, trunks, **top) as api:
            flash = [
                await api.get("initCall", phone=f"7916123456{i}", code=f"100{i}") for i in (1, 2)
            ]
            voice = await api.post_json(
                "initCall", {"phone": 79261234567, "code": "4719", "voice": True}
            )
            provider = sip_provider(api)

            def ringing_now() -> int:
                txs = provider.transport.transactions.values()
                return sum(1 for t in txs if getattr(t, "provisional", None) is not None)

            await until(lambda: ringing_now() == 2 and sink.packets > 0)
            creds = api.creds
            # Leaving the block stops the runtime: the calls are cut after drain_s.
        voice_packets = sink.packets
        await asyncio.to_thread(ringing.assert_ok)
        await asyncio.to_thread(answering.assert_ok)
        assert len(ringing.lines("CANCEL")) == 2  # the phones stopped ringing
        assert len(answering.lines("BYE")) == 1  # the voice call was hung up
        await asyncio.sleep(0.2)
        assert sink.packets == voice_packets  # and its voice stopped

        # A restart finalises the cut calls as interrupted and never dials them again.
        async with sip_api(settings, trunks, **top) as again:
            uids = [b["ucaller_id"] for b in (*flash, voice)]
            infos = []
            for uid in uids:
                infos.append(await wait_final_as(again, creds, uid, within_s=30))
    finally:
        rtp.close()
    assert [(i["call_status"], i["call_outcome"]) for i in infos] == [(0, "interrupted")] * 3
    assert len(ringing.lines("INVITE")) == 2 and len(answering.lines("INVITE")) == 1


async def wait_final_as(
    api: Api, creds: dict[str, Any], uid: int, within_s: float
) -> dict[str, Any]:
    """getInfo with another service's credentials (the one that placed the call)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while True:
        r = await api.client.get("/v1.0/getInfo", params={**creds, "uid": uid})
        info: dict[str, Any] = r.json()
        if info.get("call_status", -1) != -1 or loop.time() > end:
            return info
        await asyncio.sleep(0.1)


def sleepy_espeak(tmp_path: Path) -> tuple[Path, Path]:
    """An 'espeak-ng' that records its PID and arguments, then hangs."""
    pids = tmp_path / "espeak.pids"
    script = tmp_path / "espeak-ng"
    script.write_text(f'#!/bin/sh\necho "$$ $*" >> {pids}\nexec sleep 600\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_hung_prompt_synthesis_ends_the_voice_call_and_is_killed(
    sipp: Sipp, settings: Settings, tmp_path: Path
) -> None:
    espeak, pids = sleepy_espeak(tmp_path)
    far = sipp.start("uas_answer.xml", calls=1, keys={"rtp_port": "9"})
    top = {"espeak": str(espeak), "espeak_timeout_s": 2}
    async with sip_api(settings, [trunk("main", far.port)], **top) as api:
        body = await api.post_json("initCall", VOICE_CALL)
        info = await api.wait_final(body["ucaller_id"], within_s=30)
        balance = await api.get("getBalance")
        runs = [line.split(" ", 1) for line in pids.read_text().splitlines()]
        # Every espeak-ng run for this call's language is over by the time it has an outcome.
        assert any("-v ru" in args for _, args in runs)
        assert [pid for pid, args in runs if "-v ru" in args and alive(int(pid))] == []
    far.kill()
    assert (info["call_status"], info["call_outcome"]) == (0, "network_error")
    assert "voice prompt" in info["sip_reason"]
    assert far.lines("INVITE") == []  # nothing went on the wire
    assert balance["rub_balance"] == 100
    # Stopping the service kills any synthesis still running (the other language's warm-up).
    runs = [line.split(" ", 1) for line in pids.read_text().splitlines()]
    assert [pid for pid, _ in runs if alive(int(pid))] == []


class StubbornProvider:
    """A provider that ignores cancellation until told to stop: a bug the deadline cannot end."""

    name = "stubborn"

    def __init__(self, deadline_s: float = 0.3) -> None:
        self.release = asyncio.Event()
        self.cancelled = 0
        self.deadline = deadline_s

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def check(self, request: CallRequest) -> str | None:
        return None

    async def healthy(self) -> bool:
        return True

    def deadline_s(self, request: CallRequest) -> float:
        return self.deadline

    def confirmation_number(self, caller: str) -> str | None:
        return None

    def on_inbound(self, handler: InboundHandler) -> None:
        return None

    async def place_call(self, request: CallRequest, events: EventSink | None = None) -> CallReport:
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
        return CallReport(outcome=Outcome.DELIVERED, reason="too late")


async def test_a_call_stuck_past_its_deadline_loses_its_lease_and_is_interrupted(
    settings: Settings,
) -> None:
    stubborn = StubbornProvider()
    async with make_api(settings.model_copy(update={"lease_s": 1.0}), Clock()) as api:
        assert api.rt.dispatcher is not None
        api.rt.dispatcher.provider = stubborn
        try:
            body = await api.get("initCall", phone="79161234567", code="4719")
            info = await api.wait_final(body["ucaller_id"], within_s=20)
            stuck = api.rt.dispatcher.inflight
        finally:
            stubborn.release.set()
        await until(lambda: api.rt.dispatcher is not None and api.rt.dispatcher.inflight == 0)
        later = await api.get("getInfo", uid=body["ucaller_id"])
        balance = await api.get("getBalance")
    # The deadline cancelled it; the lease was no longer renewed, so recovery ended the row.
    assert stubborn.cancelled >= 1 and stuck == 1
    assert (info["call_status"], info["call_outcome"]) == (0, "interrupted")
    assert (later["call_status"], later["call_outcome"]) == (0, "interrupted")  # not rewritten
    assert balance["rub_balance"] == 100


async def test_shutdown_does_not_hang_on_a_call_that_ignores_cancellation(
    settings: Settings,
) -> None:
    stubborn = StubbornProvider(deadline_s=600)  # only the shutdown cancels it
    async with make_api(settings.model_copy(update={"drain_s": 0.1}), Clock()) as api:
        dispatcher = api.rt.dispatcher
        assert dispatcher is not None
        dispatcher.provider = stubborn
        try:
            await api.get("initCall", phone="79161234567", code="4719")
            await until(lambda: stubborn.cancelled == 0 and dispatcher.inflight == 1)
            stopped = asyncio.create_task(dispatcher.stop(drain_s=0.1))
            done, _ = await asyncio.wait({stopped}, timeout=60)
            still_stuck = dispatcher.inflight
        finally:
            stubborn.release.set()
    assert done == {stopped}  # the stop returned while the call was still stuck
    assert stubborn.cancelled >= 1 and still_stuck == 1


def test_the_deadline_covers_every_trunk_a_call_may_fail_over_to() -> None:
    flash = CallRequest(1, "79161234567", "4719", kind=CallKind.FLASH)
    voice = CallRequest(1, "79161234567", "4719", kind=CallKind.VOICE)
    mix = CallRequest(1, "79161234567", "4719", kind=CallKind.MIX)
    one = helpers.provider(helpers.trunk("a", 5070))
    two = helpers.provider(helpers.trunk("a", 5070), helpers.trunk("b", 5071))
    stop_at_first = helpers.provider(
        helpers.trunk("a", 5070, failover=False), helpers.trunk("b", 5071)
    )
    capped = helpers.provider(helpers.trunk("a", 5070, max_call_s=3))
    t = one.config.trunks[0]
    # Longer than the trunk's own timers, so they end a call first whenever they work.
    assert one.deadline_s(flash) > t.progress_timeout_s + t.ring_hold_s + 64 * one.config.t1_s
    assert one.deadline_s(voice) > t.answer_timeout_s + 64 * one.config.t1_s
    assert one.deadline_s(mix) > one.deadline_s(flash) + t.answer_timeout_s
    assert two.deadline_s(flash) > one.deadline_s(flash) + t.progress_timeout_s
    assert stop_at_first.deadline_s(flash) == one.deadline_s(flash)
    assert capped.deadline_s(flash) == 3 + DEADLINE_MARGIN_S < one.deadline_s(flash)
