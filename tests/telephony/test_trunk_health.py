"""Trunk health with SIPp: OPTIONS keepalives mark a trunk down (calls skip it) and up
again; a caller-ID prefix the far end starts refusing leaves the pool."""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY, generate_latest

from opencaller.cli.sip_status import status_lines
from opencaller.telephony.base import CallKind, CallRequest, Outcome
from opencaller.telephony.sip.provider import SipProvider

from .helpers import provider, trunk, until
from .sipp import Sipp, free_udp_port

pytestmark = pytest.mark.sip


def flash(n: int, code: str = "4719") -> CallRequest:
    return CallRequest(ucaller_id=n, destination="79161234567", code=code, kind=CallKind.FLASH)


def is_up(p: SipProvider, name: str) -> bool:
    return next(s for s in p.trunk_status() if s.name == name).up is True


def status_now() -> list[str]:
    return status_lines(generate_latest(REGISTRY).decode())


def scraped(line: str) -> bool:
    return line in generate_latest(REGISTRY).decode()


KEEPALIVE = {"options_interval_s": 0.2, "options_timeout_s": 0.5, "down_after": 2, "up_after": 2}


async def test_trunk_not_answering_options_is_skipped_until_it_answers(sipp: Sipp) -> None:
    silent_port = free_udp_port()  # nobody listens: OPTIONS go unanswered
    backup = sipp.start("uas_ring_cancel.xml", calls=1)
    p = provider(
        trunk("hc-a", silent_port, **KEEPALIVE),
        trunk("hc-b", backup.port),
    )
    await p.start()
    try:
        await until(lambda: not is_up(p, "hc-a"))
        status = p.trunk_status()
        assert [(s.name, s.usable, s.up) for s in status] == [
            ("hc-a", False, False),
            ("hc-b", True, None),
        ]
        # At least down_after in a row (more may have failed since).
        assert re.fullmatch(r"down \(\d+ keepalives failed, no answer\)", status[0].why_not or "")
        assert scraped('opencaller_sip_trunk_up{trunk="hc-a"} 0.0')
        assert any(x.startswith("trunk hc-a: DOWN for ") for x in status_now())
        rep = await p.place_call(flash(1))
        # One leg only: the down trunk was not tried (no progress timeout waited on it).
        assert rep.outcome is Outcome.DELIVERED, rep
        assert rep.reason == "180 then CANCEL"
        backup.assert_ok()

        # The trunk comes back: answers OPTIONS, then takes the next call itself.
        back = sipp.start("uas_options_ring.xml", calls=10_000, port=silent_port)
        await until(lambda: is_up(p, "hc-a"))
        assert scraped('opencaller_sip_trunk_up{trunk="hc-a"} 1.0')
        rep = await p.place_call(flash(2))
        assert rep.outcome is Outcome.DELIVERED, rep
        await until(lambda: len(back.lines("INVITE")) == 1)
        assert len(back.lines("OPTIONS")) >= 2
    finally:
        await p.close()
    assert scraped(
        'opencaller_sip_trunk_calls_total{code_class="1xx",result="rang",trunk="hc-a"} 1.0'
    )


async def test_prefix_the_far_end_refuses_leaves_the_pool(sipp: Sipp) -> None:
    far = sipp.start("uas_prefix_block.xml", calls=10_000)
    p = provider(
        trunk("pfx", far.port),
        caller_ids={"prefixes": ["7900444", "7900777"]},
        caller_id_health={"window_s": 600, "min_calls": 3, "min_ring_rate": 0.5},
    )
    await p.start()
    try:
        reports = []
        for n in range(40):
            reports.append(await p.place_call(flash(n, f"{n:04d}")))
            if p.monitor.prefixes.blocked("7900444"):
                break
        refused = [r for r in reports if r.caller_id and r.caller_id.startswith("7900444")]
        assert len(refused) == 3 and all(r.outcome is Outcome.REJECTED for r in refused)
        assert all(r.outcome is Outcome.DELIVERED for r in reports if r not in refused)
        stats = p.monitor.prefixes.ring_rates()["7900444"]
        assert (stats.calls, stats.ring_rate, stats.blocked) == (3, 0.0, True)
        assert scraped('opencaller_sip_prefix_blocked{prefix="7900444"} 1.0')
        assert "caller-ID prefix 7900444: OUT of the pool, ring rate 0%" in status_now()
        after = [await p.place_call(flash(100 + n, "1234")) for n in range(5)]
        assert {r.caller_id for r in after} == {"79007771234"}
        assert all(r.outcome is Outcome.DELIVERED for r in after)
        # The operator puts it back.
        assert p.monitor.prefixes.restore("7900444")
        assert scraped('opencaller_sip_prefix_blocked{prefix="7900444"} 0.0')
        assert not p.monitor.prefixes.blocked("7900444")
    finally:
        await p.close()
    assert scraped(
        'opencaller_sip_prefix_calls_total{code_class="4xx",prefix="7900444",result="not_rang"} 3.0'
    )
