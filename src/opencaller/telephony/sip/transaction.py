"""Client transactions (RFC 3261 §17.1) with timers A/B (INVITE) and E/F (others).

Over TCP and TLS (a reliable next hop) nothing is retransmitted (Timers A and E do not run)
and the absorbing Timers D and K are zero; Timers B and F still bound the wait.

Retransmission intervals get ±10 % jitter so many calls started together do not retransmit
in lock-step. Responses are handed to the call through a queue; ``None`` in the queue means
the transaction timed out (Timer B or F) without a final response.
"""

from __future__ import annotations

import asyncio
import random

from sipmessage import Request, Response

from opencaller.telephony.sip.messages import tag_of
from opencaller.telephony.sip.transport import Addr, Transport, is_reliable

TIMER_D = 32.0  # absorb retransmitted non-2xx finals of an INVITE
TIMER_K = 5.0  # absorb retransmitted finals of other requests


def _jitter(t: float) -> float:
    return t * random.uniform(0.9, 1.1)


class ClientTransaction:
    def __init__(
        self,
        transport: Transport,
        req: Request,
        branch: str,
        dest: Addr,
        *,
        t1: float,
        t2: float,
    ) -> None:
        self.transport = transport
        self.req = req
        self.method = req.method
        self.branch = branch
        self.dest = dest
        self.t1, self.t2 = t1, t2
        self.is_invite = req.method == "INVITE"
        self.reliable = is_reliable(dest)
        self.error: str | None = None  # why the next hop could not be reached
        self.data = bytes(req)
        self.queue: asyncio.Queue[Response | None] = asyncio.Queue()
        self.provisional: Response | None = None
        self.final: Response | None = None
        self._ack: bytes | None = None
        self._interval = t1
        self._loop = asyncio.get_running_loop()
        self._retrans: asyncio.TimerHandle | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.branch, self.method)

    def start(self) -> None:
        self.transport.transactions[self.key] = self
        self.transport.send(self.data, self.dest)
        if not self.reliable:
            self._retrans = self._loop.call_later(_jitter(self._interval), self._retransmit)
        self._timeout = self._loop.call_later(64 * self.t1, self._expire)

    def _retransmit(self) -> None:
        if self.final is not None or self._closed or self.reliable:
            return
        if self.is_invite and self.provisional is not None:
            return  # Timer A only runs in the Calling state
        self.transport.send(self.data, self.dest)
        if self.is_invite:
            self._interval *= 2
        elif self.provisional is not None:
            self._interval = self.t2
        else:
            self._interval = min(self._interval * 2, self.t2)
        self._retrans = self._loop.call_later(_jitter(self._interval), self._retransmit)

    def _expire(self) -> None:
        # Timer B/F. An INVITE that got a provisional waits for its final (or our CANCEL).
        if self.final is not None or (self.is_invite and self.provisional is not None):
            return
        self.queue.put_nowait(None)
        self.close()

    def receive(self, resp: Response) -> None:
        if resp.code < 200:
            if self.final is None:
                first = self.provisional is None
                self.provisional = resp
                if first and not self.is_invite and not self.reliable:
                    # Proceeding: keep retransmitting, at T2.
                    if self._retrans is not None:
                        self._retrans.cancel()
                    self._retrans = self._loop.call_later(_jitter(self.t2), self._retransmit)
                self.queue.put_nowait(resp)
            return
        if self.final is not None:
            if self._ack is not None:
                self.transport.send(self._ack, self.dest)  # our ACK was lost
            return
        self.final = resp
        self._cancel_timers()
        self.queue.put_nowait(resp)
        if self.is_invite and resp.code >= 300:
            self._ack = bytes(self._non2xx_ack(resp))
            self.transport.send(self._ack, self.dest)
            self._linger(TIMER_D)
        elif self.is_invite:
            self.close()  # 2xx: the call ACKs, and its dialog sees retransmissions
        else:
            self._linger(TIMER_K)

    def _linger(self, timer: float) -> None:
        if self.reliable:
            self.close()  # nothing is retransmitted over a stream
        else:
            self._loop.call_later(timer, self.close)

    def transport_error(self, why: str) -> None:
        """The next hop cannot be reached: end like Timer B/F, at once (§17.1.4)."""
        if self.final is not None or self._closed:
            return
        self.error = why
        self.queue.put_nowait(None)
        self.close()

    def _non2xx_ack(self, resp: Response) -> Request:
        """ACK in the same transaction (§17.1.1.3): same branch, To from the response."""
        ack = Request("ACK", self.req.uri)
        h = ack.headers
        h.add("Via", self.req.headers.getlist("Via")[0])
        h.add("Max-Forwards", "70")
        h.add("From", self.req.headers["From"])
        h.add("To", resp.headers["To"])
        h.add("Call-ID", self.req.headers["Call-ID"])
        h.add("CSeq", f"{self.req.headers['CSeq'].split()[0]} ACK")
        for route in self.req.headers.getlist("Route"):
            h.add("Route", route)
        h.add("Content-Length", "0")
        return ack

    async def response(self, wait_s: float | None) -> Response | None:
        """The next response; ``None`` on transaction timeout. Raises TimeoutError."""
        if wait_s is not None and wait_s <= 0 and self.queue.empty():
            raise TimeoutError
        return await asyncio.wait_for(self.queue.get(), wait_s)

    def abandon(self) -> None:
        """Stop retransmitting: give up on a next hop that never answered."""
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _cancel_timers(self) -> None:
        for h in (self._retrans, self._timeout):
            if h is not None:
                h.cancel()
        self._retrans = self._timeout = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timers()
        if self.transport.transactions.get(self.key) is self:
            del self.transport.transactions[self.key]

    @property
    def to_tag(self) -> str | None:
        resp = self.final or self.provisional
        return tag_of(resp.headers.get("To")) if resp is not None else None
