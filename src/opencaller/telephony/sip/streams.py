"""SIP over TCP and TLS: stream framing and one reused connection per trunk target.

A stream carries SIP messages back to back; each ends after its headers (a blank line) and
``Content-Length`` bytes of body (RFC 3261 §18.3, where the header is mandatory). Outgoing
connections are pooled by (transport, ip, port, TLS server name): the first message to a
target opens the connection and waits in a queue until it is up; a lost connection is
reopened by the next message. Messages received on any connection (ours or one the far end
opened to our listener) are handed on with a :class:`StreamPeer` as their address, so a reply
to a request goes back over the connection it came on (§18.2.2).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable

log = logging.getLogger("opencaller.sip")

MAX_HEADERS = 64 * 1024  # a SIP header block larger than this is not a trunk talking
MAX_BODY = 1024 * 1024
# Connections others open to our listeners: beyond this many, new ones are closed at once
# (a trunk needs a handful; thousands would be someone exhausting our file descriptors).
MAX_ACCEPTED = 1024
_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*$", re.I | re.M)

Addr = tuple[str, int]


class FramingError(ValueError):
    """The byte stream is not SIP messages (no Content-Length, or too large)."""


def split_messages(buf: bytearray) -> list[bytes]:
    """Take every complete message off the front of ``buf`` (in place).

    Leading CRLFs (keep-alives, RFC 5626 §3.5.1) are dropped. Raises FramingError when the
    stream cannot be resynchronised, after which the connection must be closed.
    """
    out: list[bytes] = []
    while True:
        start = 0
        while buf[start : start + 2] == b"\r\n":
            start += 2
        if start:
            del buf[:start]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADERS:
                raise FramingError("header block too large")
            return out
        head = bytes(buf[:end])
        m = _LENGTH.search(head)
        if m is None:
            raise FramingError("message without Content-Length on a stream")
        length = int(m.group(1))
        if length > MAX_BODY:
            raise FramingError("message body too large")
        total = end + 4 + length
        if len(buf) < total:
            return out
        out.append(bytes(buf[:total]))
        del buf[:total]


class Target(tuple[str, int]):
    """A next hop: an (ip, port) that also says over which transport to reach it.

    It is an ``Addr`` everywhere, so code that only passes destinations around does not
    change; :class:`Transport.send` looks at ``proto`` to pick UDP or a stream connection.
    """

    proto: str
    server_name: str | None
    tls: ssl.SSLContext | None

    def __new__(
        cls,
        ip: str,
        port: int,
        proto: str = "udp",
        server_name: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Target:
        self = super().__new__(cls, (ip, port))
        self.proto = proto
        self.server_name = server_name
        self.tls = tls
        return self

    @property
    def key(self) -> tuple[str, str, int, str | None]:
        return (self.proto, self[0], self[1], self.server_name)

    def __repr__(self) -> str:
        return f"Target({self[0]!r}, {self[1]}, {self.proto!r})"


class StreamPeer(tuple[str, int]):
    """The far end of one stream connection, as the address of what came over it."""

    conn: StreamConnection

    def __new__(cls, addr: Addr, conn: StreamConnection) -> StreamPeer:
        self = super().__new__(cls, (addr[0], addr[1]))
        self.conn = conn
        return self

    @property
    def proto(self) -> str:
        return self.conn.proto


OnMessage = Callable[[bytes, "StreamPeer"], None]


class StreamConnection(asyncio.Protocol):
    def __init__(
        self, proto: str, on_message: OnMessage, on_lost: Callable[[StreamConnection], None]
    ) -> None:
        self.proto = proto
        self.on_message = on_message
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.peer: StreamPeer | None = None
        self.pending: list[bytes] = []  # written before the connection was up
        self.closed = False
        self.refuse = False  # close as soon as it is made (too many connections)
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.refuse:
            transport.close()
            return
        addr = transport.get_extra_info("peername")
        self.peer = StreamPeer((str(addr[0]), int(addr[1])), self)
        for data in self.pending:
            transport.write(data)  # type: ignore[attr-defined]
        self.pending.clear()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            messages = split_messages(self._buf)
        except FramingError as e:
            log.warning("closing SIP %s connection from %s: %s", self.proto, self.peer, e)
            self.close()
            return
        assert self.peer is not None
        for msg in messages:
            self.on_message(msg, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.on_lost(self)

    def close(self) -> None:
        self.closed = True
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()


class StreamPool:
    """Outgoing connections, one per target, plus the connections accepted by our listeners."""

    def __init__(
        self,
        on_message: OnMessage,
        on_failure: Callable[[Target, str], None],
        connect_timeout_s: float,
    ) -> None:
        self.on_message = on_message
        self.on_failure = on_failure  # a connection could not be opened: fail its waiters
        self.connect_timeout_s = connect_timeout_s
        self._out: dict[tuple[str, str, int, str | None], StreamConnection] = {}
        self._accepted: set[StreamConnection] = set()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.connects = 0  # connections opened (tests and metrics: reuse means few)
        self.refused = 0  # accepted connections closed at once (over MAX_ACCEPTED)

    def send(self, data: bytes, target: Target) -> None:
        conn = self._out.get(target.key)
        if conn is None or conn.closed:
            conn = self._open(target)
        conn.write(data)

    def _open(self, target: Target) -> StreamConnection:
        conn = StreamConnection(target.proto, self.on_message, self._lost)
        self._out[target.key] = conn
        task = asyncio.get_running_loop().create_task(self._connect(conn, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _connect(self, conn: StreamConnection, target: Target) -> None:
        loop = asyncio.get_running_loop()
        self.connects += 1
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    target[0],
                    target[1],
                    ssl=target.tls,
                    server_hostname=target.server_name if target.tls is not None else None,
                ),
                self.connect_timeout_s,
            )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            # ssl.SSLCertVerificationError is an SSLError: a certificate we do not trust
            # ends here, and the call fails over as if the trunk were down.
            why = f"{type(e).__name__}: {e}"
            log.warning("SIP %s connection to %s:%d failed: %s", target.proto, *target, why)
            conn.close()
            if self._out.get(target.key) is conn:
                del self._out[target.key]
            self.on_failure(target, why)

    def _lost(self, conn: StreamConnection) -> None:
        self._accepted.discard(conn)
        for key, c in list(self._out.items()):
            if c is conn:
                del self._out[key]

    async def listen(self, proto: str, ip: str, port: int, tls: ssl.SSLContext | None) -> int:
        """Accept connections (the far end sends in-dialog requests to our Contact)."""

        def accept() -> StreamConnection:
            conn = StreamConnection(proto, self.on_message, self._lost)
            if len(self._accepted) >= MAX_ACCEPTED:
                self.refused += 1
                conn.refuse = True
            else:
                self._accepted.add(conn)
            return conn

        server = await asyncio.get_running_loop().create_server(
            accept, ip, port, ssl=tls, reuse_address=True
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for server in self._servers:
            server.close()
        for conn in [*self._out.values(), *self._accepted]:
            conn.close()
        self._out.clear()
        self._accepted.clear()
        self._servers.clear()
