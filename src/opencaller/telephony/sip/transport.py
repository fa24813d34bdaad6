"""One UDP socket (and, for TCP/TLS trunks, a pool of stream connections) for all SIP
traffic, and the tables that route what arrives on them.

Responses go to the client transaction named by (top Via branch, CSeq method); a response
no transaction claims (a retransmitted 2xx) goes to the dialog with its Call-ID. Requests go
to the dialog with their Call-ID, else to the request handler (inbound calls, OPTIONS).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol, cast, runtime_checkable

from sipmessage import Message, Request, Response

from opencaller.telephony.sip.messages import cseq_of, top_branch
from opencaller.telephony.sip.streams import StreamPeer, StreamPool, Target

log = logging.getLogger("opencaller.sip")

Addr = tuple[str, int]


class ResponseSink(Protocol):
    def receive(self, resp: Response) -> None: ...


@runtime_checkable
class FailableSink(Protocol):
    """A client transaction told when its next hop cannot be reached (RFC 3261 §17.1.4)."""

    dest: Addr

    def transport_error(self, why: str) -> None: ...


def proto_of(addr: Addr) -> str:
    """ "udp", "tcp" or "tls": how ``addr`` is reached (a plain tuple is UDP)."""
    if isinstance(addr, (Target, StreamPeer)):
        return addr.proto
    return "udp"


def is_reliable(addr: Addr) -> bool:
    """TCP and TLS: no retransmissions, no absorbing timers (RFC 3261 §17.1.1.2, §17.1.2.2)."""
    return proto_of(addr) != "udp"


class DialogSink(Protocol):
    def on_response(self, resp: Response, addr: Addr) -> None: ...

    def on_request(self, req: Request, addr: Addr) -> None: ...


class Transport(asyncio.DatagramProtocol):
    def __init__(self, on_request: Callable[[Request, Addr], None]) -> None:
        self.on_request = on_request
        self.transactions: dict[tuple[str, str], ResponseSink] = {}
        self.dialogs: dict[str, DialogSink] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self.local: Addr = ("0.0.0.0", 0)
        self.dropped = 0
        self.streams = StreamPool(self._stream_message, self._stream_failed, connect_timeout_s=5.0)

    async def start(self, ip: str, port: int, buffer_size: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Bursts of responses arrive faster than one loop iteration drains them.
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, buffer_size)
            except OSError:
                log.warning("could not set socket buffer to %d", buffer_size)
        sock.bind((ip, port))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.local = sock.getsockname()[:2]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        self.streams.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes, addr: Addr) -> None:
        if isinstance(addr, StreamPeer):
            addr.conn.write(data)  # a reply goes back over the connection it came on
            return
        if isinstance(addr, Target) and addr.proto != "udp":
            self.streams.send(data, addr)
            return
        if self._transport is None:
            return
        self._transport.sendto(data, addr)

    def _stream_message(self, data: bytes, peer: StreamPeer) -> None:
        self.datagram_received(data, peer)

    def _stream_failed(self, target: Target, why: str) -> None:
        """No connection to ``target``: its transactions end now rather than at Timer B."""
        for sink in list(self.transactions.values()):
            if not isinstance(sink, FailableSink):
                continue
            if isinstance(sink.dest, Target) and sink.dest.key == target.key:
                sink.transport_error(why)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if not data.strip():
            return  # CRLF keep-alive
        try:
            msg = Message.parse(data)
        except (ValueError, UnicodeDecodeError, KeyError):
            self.dropped += 1
            log.debug("unparsable datagram from %s", addr)
            return
        try:
            if isinstance(msg, Response):
                self._route_response(msg, addr)
            else:
                dialog = self.dialogs.get(msg.headers.get("Call-ID") or "")
                if dialog is not None:
                    dialog.on_request(msg, addr)
                else:
                    self.on_request(msg, addr)
        except Exception:  # one bad message must not stop the receive loop
            log.exception("error handling SIP message from %s", addr)

    def _route_response(self, resp: Response, addr: Addr) -> None:
        branch = top_branch(resp)
        if branch is None:
            return
        _, method = cseq_of(resp)
        tx = self.transactions.get((branch, method))
        if tx is not None:
            tx.receive(resp)
            return
        dialog = self.dialogs.get(resp.headers.get("Call-ID") or "")
        if dialog is not None:
            dialog.on_response(resp, addr)


def via_transport(dest: Addr) -> str:
    """The Via transport token for a request sent to ``dest`` (UDP, TCP or TLS)."""
    return proto_of(dest).upper()
