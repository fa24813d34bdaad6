"""Trunk health: OPTIONS keepalives mark a trunk down or up (RFC 3261 §11).

A trunk is down after ``down_after`` keepalives in a row got no answer within
``options_timeout_s`` (or a 5xx: the next hop is there but out of service), and up again
after ``up_after`` answered ones. Any other answer, even 404 or 405, shows that the trunk
is there and processing requests. Calls skip a down trunk before waiting on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opencaller.telephony.sip import messages as m
from opencaller.telephony.sip.config import TrunkConfig
from opencaller.telephony.sip.registration import Local, final_response
from opencaller.telephony.sip.transaction import ClientTransaction
from opencaller.telephony.sip.transport import Addr, Transport, via_transport

log = logging.getLogger("opencaller.sip.health")


@dataclass(slots=True)
class TrunkHealth:
    down_after: int
    up_after: int
    up: bool = True  # until a keepalive says otherwise
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive
    last_code: int | None = None
    since: float = field(default_factory=time.time)

    def record(self, code: int | None) -> bool:
        """Count one keepalive's answer (None: none in time). True when up/down changed."""
        self.last_code = code
        ok = code is not None and not 500 <= code < 600
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            flip = not self.up and self.successes >= self.up_after
        else:
            self.failures, self.successes = self.failures + 1, 0
            flip = self.up and self.failures >= self.down_after
        if flip:
            self.up, self.since = not self.up, time.time()
        return flip

    def why_not(self) -> str | None:
        if self.up:
            return None
        last = f"last answer {self.last_code}" if self.last_code else "no answer"
        return f"down ({self.failures} keepalives failed, {last})"


class KeepAlive:
    """Sends OPTIONS to one trunk every ``options_interval_s`` and keeps its ``health``."""

    def __init__(
        self,
        transport: Transport,
        trunk: TrunkConfig,
        dest: Addr,
        local: Local,
        *,
        on_change: Callable[[str, TrunkHealth], None] | None = None,
    ) -> None:
        self.transport, self.trunk, self.dest, self.local = transport, trunk, dest, local
        self.health = TrunkHealth(trunk.down_after, trunk.up_after)
        self.on_change = on_change
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"sip-options-{self.trunk.name}"
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        interval = self.trunk.options_interval_s or 30.0
        while True:
            try:
                code = await self.probe()
            except Exception:  # a bug must not stop keepalives: log, count as no answer
                log.exception("trunk %s: OPTIONS failed", self.trunk.name)
                code = None
            if self.health.record(code):
                h = self.health
                if h.up:
                    log.info("trunk %s is up again (OPTIONS answered %s)", self.trunk.name, code)
                else:
                    log.error("trunk %s is down: %s", self.trunk.name, h.why_not())
            if self.on_change is not None:
                self.on_change(self.trunk.name, self.health)
            await asyncio.sleep(interval)

    async def probe(self) -> int | None:
        """One OPTIONS; its final status, or None without one within the timeout."""
        t = self.trunk
        branch = m.new_branch()
        hostport = f"{self.local.ip}:{self.local.port}"
        req = m.request(
            "OPTIONS",
            f"sip:{t.host}:{t.port}",
            via=f"SIP/2.0/{via_transport(self.dest)} {hostport};branch={branch};rport",
            from_=f"<sip:opencaller@{hostport}>;tag={m.new_tag()}",
            to=f"<sip:{t.host}:{t.port}>",
            call_id=m.new_call_id(self.local.ip),  # each keepalive a request of its own
            cseq=1,
            headers=[("Contact", f"<sip:opencaller@{hostport}>"), ("Accept", "application/sdp")],
            user_agent=self.local.user_agent,
        )
        tx = ClientTransaction(
            self.transport, req, branch, self.dest, t1=self.local.t1, t2=self.local.t2
        )
        tx.start()
        try:
            resp = await asyncio.wait_for(final_response(tx), t.options_timeout_s)
        except TimeoutError:
            return None
        finally:
            tx.abandon()
        return None if resp is None else resp.code
