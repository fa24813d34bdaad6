"""What the provider knows about its trunks' state: registrations, keepalives, and the ring
rates of trunks and caller-ID prefixes; mirrored into /metrics.

``why_not(trunk)`` tells a call whether it may use a trunk now (registered, not down);
``record`` counts one finished attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from opencaller.observability import metrics
from opencaller.telephony.base import CallReport
from opencaller.telephony.sip.config import SipConfig, TrunkConfig
from opencaller.telephony.sip.health import KeepAlive, TrunkHealth
from opencaller.telephony.sip.prefix_pool import PrefixHealth, PrefixStats, prefix_of
from opencaller.telephony.sip.registration import Local, Registration, RegState
from opencaller.telephony.sip.transport import Addr, Transport

FIRST_REGISTER_WAIT_S = 5.0  # start() waits this long at most for the first registrations


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """One line of the trunk view (``SipProvider.trunk_status``)."""

    name: str
    usable: bool
    why_not: str | None
    registered: bool | None  # None: the trunk does not register
    register_code: int | None
    up: bool | None  # None: no keepalives
    since: float | None  # unix time of the last registration or up/down change


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return value, default_port


async def resolve(host: str, port: int) -> Addr:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
    )
    ip, p = infos[0][4][:2]
    return str(ip), int(p)


class TrunkMonitor:
    def __init__(self, config: SipConfig) -> None:
        self.config = config
        self.registrations: dict[str, Registration] = {}
        self.keepalives: dict[str, KeepAlive] = {}
        self.prefixes = PrefixHealth(
            config.caller_id_health, on_change=_prefix_metrics, on_evict=_forget_prefix
        )

    async def start(self, transport: Transport, local: Local, addrs: dict[str, Addr]) -> None:
        for t in self.config.trunks:
            if t.registration:
                host, port = split_hostport(t.registrar or t.host, t.port)
                dest = addrs[t.name] if t.registrar is None else await resolve(host, port)
                reg = Registration(transport, t, dest, local, on_change=_register_metrics)
                _register_metrics(t.name, reg.state)
                self.registrations[t.name] = reg
                reg.start()
            if t.options_interval_s is not None:
                ka = KeepAlive(transport, t, addrs[t.name], local, on_change=_health_metrics)
                _health_metrics(t.name, ka.health)
                self.keepalives[t.name] = ka
                ka.start()

        # Calls right after start should not fail for a registration a moment away.
        first = [asyncio.create_task(r.attempted.wait()) for r in self.registrations.values()]
        if first:
            _, pending = await asyncio.wait(first, timeout=FIRST_REGISTER_WAIT_S)
            for task in pending:
                task.cancel()

    async def close(self) -> None:
        """Stop keepalives and unregister every trunk (before the transport closes)."""
        await asyncio.gather(
            *(k.close() for k in self.keepalives.values()),
            *(r.close() for r in self.registrations.values()),
        )

    def why_not(self, trunk: TrunkConfig) -> str | None:
        """None when ``trunk`` may place a call now; otherwise why not."""
        ka = self.keepalives.get(trunk.name)
        why = ka.health.why_not() if ka is not None else None
        reg = self.registrations.get(trunk.name)
        return why or (reg.why_not() if reg is not None else None)

    def record(self, trunk: str, report: CallReport, *, flash: bool) -> None:
        """Count one attempt on ``trunk``; flash attempts also count for their caller ID."""
        cls = metrics.code_class(report.sip_code)
        result = "rang" if report.outcome.reached else "not_rang"
        metrics.SIP_TRUNK_CALLS.labels(trunk, cls, result).inc()
        if flash and report.caller_id:
            prefix = prefix_of(report.caller_id)
            self.prefixes.record(report.caller_id, report.outcome)
            if self.prefixes.tracked(prefix):  # tracked: the label set stays bounded
                metrics.SIP_PREFIX_CALLS.labels(prefix, cls, result).inc()

    def status(self) -> list[TrunkStatus]:
        out = []
        for t in self.config.trunks:
            reg, ka = self.registrations.get(t.name), self.keepalives.get(t.name)
            since = [x.state.since for x in (reg,) if x is not None]
            since += [k.health.since for k in (ka,) if k is not None]
            why = self.why_not(t)
            out.append(
                TrunkStatus(
                    name=t.name,
                    usable=why is None,
                    why_not=why,
                    registered=None if reg is None else reg.state.registered,
                    register_code=None if reg is None else reg.state.last_code,
                    up=None if ka is None else ka.health.up,
                    since=max(since) if since else None,
                )
            )
        return out


def _register_metrics(trunk: str, s: RegState) -> None:
    metrics.SIP_TRUNK_REGISTERED.labels(trunk).set(1 if s.registered else 0)
    metrics.SIP_TRUNK_REGISTER_CODE.labels(trunk).set(s.last_code or 0)
    metrics.SIP_TRUNK_STATE_SINCE.labels(trunk, "register").set(s.since)


def _health_metrics(trunk: str, h: TrunkHealth) -> None:
    metrics.SIP_TRUNK_UP.labels(trunk).set(1 if h.up else 0)
    metrics.SIP_TRUNK_STATE_SINCE.labels(trunk, "options").set(h.since)


def _forget_prefix(prefix: str) -> None:
    for gauge in (metrics.SIP_PREFIX_RING_RATE, metrics.SIP_PREFIX_BLOCKED):
        with contextlib.suppress(KeyError):
            gauge.remove(prefix)
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "none"):
        for result in ("rang", "not_rang"):
            with contextlib.suppress(KeyError):
                metrics.SIP_PREFIX_CALLS.remove(prefix, cls, result)


def _prefix_metrics(s: PrefixStats) -> None:
    metrics.SIP_PREFIX_BLOCKED.labels(s.prefix).set(1 if s.blocked else 0)
    if s.ring_rate is not None:
        metrics.SIP_PREFIX_RING_RATE.labels(s.prefix).set(s.ring_rate)
