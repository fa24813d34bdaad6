"""Flash calls against SIPp: caller ID, ringing + CANCEL, rejections, auth, loss, failover."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opencaller.telephony.base import CallEvent, CallKind, CallRequest, Outcome, ProviderError

from .helpers import provider, trunk
from .sipp import Sipp, render

pytestmark = pytest.mark.sip


def req(code: str, n: int = 1, dest: str = "79161234567") -> CallRequest:
    return CallRequest(ucaller_id=n, destination=dest, code=code, kind=CallKind.FLASH)


async def test_ringing_is_delivered_with_code_in_from_and_pai(sipp: Sipp) -> None:
    far = sipp.start("uas_ring_cancel.xml", calls=3)
    p = provider(trunk("main", far.port))
    await p.start()
    events: list[CallEvent] = []

    async def sink(e: CallEvent) -> None:
        events.append(e)

    try:
        codes = ["4719", "0000", "9999"]
        reports = [await p.place_call(req(c, i), sink) for i, c in enumerate(codes)]
    finally:
        await p.close()
    far.assert_ok()
    for code, rep in zip(codes, reports, strict=True):
        assert rep.outcome is Outcome.DELIVERED, rep
        assert rep.sip_code == 180
        assert rep.caller_id == "7900555" + code
        assert rep.kinds_tried == (CallKind.FLASH,)
        assert rep.progress_at is not None and rep.ended_at is not None
    invites = far.lines("INVITE")
    assert [(r["from_num"][-4:], r["pai_num"][-4:]) for r in invites] == [(c, c) for c in codes]
    assert all(r["from_num"] == r["pai_num"] == "7900555" + c for r, c in zip(invites, codes))
    cancels = {r["call-id"] for r in far.lines("CANCEL")}
    assert cancels == {r["call-id"] for r in invites}
    assert [e.state for e in events if e.state == "ringing"] == ["ringing"] * 3
