"""Inbound verification calls: we never answer. Reply 180 then 603 (so the call is free for
the caller), keep the 603 going until the ACK (Timer G/H), and report who called.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from sipmessage import Request, Response

from opencaller.telephony.base import InboundCall, InboundHandler
from opencaller.telephony.sip import messages as m
from opencaller.telephony.sip.transport import Addr, Transport, is_reliable

log = logging.getLogger("opencaller.sip.inbound")

_NUMBER = re.compile(r"^(?:sips?|tel):\+?([0-9][0-9\-.()]*)(?:[@;]|$)", re.IGNORECASE)
_URI_IN_HEADER = re.compile(r"<([^>]+)>")
TIMER_I = 5.0


def number_in(header_value: str | None) -> str | None:
    """The digits of the user part of a From / P-Asserted-Identity value; None if anonymous."""
    if not header_value:
        return None
    inner = _URI_IN_HEADER.search(header_value)
    uri = (inner.group(1) if inner else header_value.split(";")[0]).strip()
    mt = _NUMBER.match(uri)
    if mt is None:
        return None  # "anonymous@anonymous.invalid", a name, or no user part
    digits = re.sub(r"[^0-9]", "", mt.group(1))
    return digits or None


def caller_of(req: Request) -> str | None:
    """P-Asserted-Identity first (the network vouches for it), then From."""
    for value in [*req.headers.getlist("P-Asserted-Identity"), req.headers.get("From")]:
        n = number_in(value)
        if n is not None:
            return n
    return None


def called_of(req: Request) -> str:
    return number_in(f"<{req.uri}>") or number_in(req.headers.get("To")) or ""


class _ServerInvite:
    def __init__(self, key: str, data: bytes, addr: Addr) -> None:
        self.key = key
        self.data = data  # the 603, resent until ACK
        self.addr = addr
        self.acked = False
        self.timer: asyncio.TimerHandle | None = None


class InboundServer:
    def __init__(
        self,
        transport: Transport,
        *,
        t1: float,
        t2: float,
        user_agent: str,
        reject_code: int,
        handler: Callable[[], InboundHandler | None],
    ) -> None:
        self.transport = transport
        self.t1, self.t2 = t1, t2
        self.user_agent = user_agent
        self.reject_code = reject_code
        self.handler = handler
        self.invites: dict[str, _ServerInvite] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def on_request(self, req: Request, addr: Addr) -> None:
        method = req.method
        if method == "INVITE":
            self._invite(req, addr)
        elif method == "ACK":
            st = self.invites.get(self._key(req))
            if st is not None and not st.acked:
                st.acked = True
                if st.timer is not None:
                    st.timer.cancel()
                asyncio.get_running_loop().call_later(TIMER_I, self._forget, st.key)
        elif method == "CANCEL":
            known = self._key(req) in self.invites
            self._send(m.response(req, 200 if known else 481), addr)
        elif method == "OPTIONS":
            self._send(
                m.response(req, 200, headers=[("Allow", m.ALLOW), ("Accept", "application/sdp")]),
                addr,
            )
        elif method == "BYE":
            self._send(m.response(req, 481), addr)
        else:
            self._send(m.response(req, 405, headers=[("Allow", m.ALLOW)]), addr)

    def _key(self, req: Request) -> str:
        return f"{req.headers.get('Call-ID')}|{m.top_branch(req)}"

    def _send(self, resp: Response, addr: Addr) -> None:
        self.transport.send(bytes(resp), addr)

    def _invite(self, req: Request, addr: Addr) -> None:
        key = self._key(req)
        st = self.invites.get(key)
        if st is not None:  # a retransmitted INVITE: repeat our final answer
            self.transport.send(st.data, st.addr)
            return
        tag = m.new_tag()
        extra = [("Server", self.user_agent)]
        self._send(m.response(req, 180, to_tag=tag, headers=extra), addr)
        final = bytes(m.response(req, self.reject_code, to_tag=tag, headers=extra))
        st = _ServerInvite(key, final, addr)
        self.invites[key] = st
        self.transport.send(final, addr)
        if not is_reliable(addr):  # Timer G runs on UDP only (RFC 3261 §17.2.1)
            self._arm(st, self.t1)
        loop = asyncio.get_running_loop()
        loop.call_later(64 * self.t1, self._forget, key)  # Timer H

        caller = caller_of(req)
        handler = self.handler()
        if caller is None:
            log.info("inbound call without a usable caller number (call-id %s)", req.call_id)
            return
        if handler is None:
            log.warning("inbound call from %s but no handler is registered", caller)
            return
        call = InboundCall(
            caller=caller, called=called_of(req), at=time.time(), call_id=req.call_id
        )
        task = loop.create_task(self._run(handler, call))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, handler: InboundHandler, call: InboundCall) -> None:
        try:
            await handler(call)
        except Exception:
            log.exception("inbound handler failed for %s", call.caller)

    def _arm(self, st: _ServerInvite, interval: float) -> None:
        def fire() -> None:  # Timer G
            if st.acked or st.key not in self.invites:
                return
            self.transport.send(st.data, st.addr)
            self._arm(st, min(interval * 2, self.t2))

        st.timer = asyncio.get_running_loop().call_later(interval, fire)

    def _forget(self, key: str) -> None:
        st = self.invites.pop(key, None)
        if st is not None and st.timer is not None:
            st.timer.cancel()

    async def close(self) -> None:
        for st in self.invites.values():
            if st.timer is not None:
                st.timer.cancel()
        self.invites.clear()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
