"""Building a SipProvider aimed at SIPp on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from opencaller.telephony.sip.provider import SipProvider, from_settings


def trunk(name: str, port: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "ring_hold_s": 0.2,
        "progress_timeout_s": 8.0,
        "answer_timeout_s": 10.0,
        "cps": 200,
    }
    base.update(kw)
    return base


def provider(*trunks: dict[str, Any], **kw: Any) -> SipProvider:
    cfg: dict[str, Any] = {
        "bind_ip": "127.0.0.1",
        "local_ip": "127.0.0.1",
        "port": 0,
        "rtp_port_min": 42000,
        "rtp_port_max": 42999,
        "trunks": list(trunks),
        "caller_ids": {"prefixes": ["7900555"]},
        "inbound_numbers": ["74950000001", "74950000002"],
    }
    cfg.update(kw)
    return from_settings(cfg)


async def until(check: Callable[[], bool], within_s: float = 30.0) -> None:
    """Wait until ``check()`` holds (a synchronisation point, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while not check():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.05)
