"""A paced G.711 RTP sender and a pool of local RTP ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
import time
from collections.abc import Callable

FRAME_BYTES = 160  # 20 ms of 8 kHz G.711
PTIME_S = 0.020


class PortPool:
    """Even ports in [low, high] (RTP convention; RTCP would be port + 1)."""

    def __init__(self, low: int, high: int) -> None:
        start = low + (low & 1)
        self._free = list(range(start, high + 1, 2))
        random.shuffle(self._free)
        self._used: set[int] = set()

    def bind(self, ip: str) -> socket.socket:
        """A bound, non-blocking UDP socket on a free port of the pool."""
        for _ in range(len(self._free)):
            port = self._free.pop(0)
            self._free.append(port)
            if port in self._used:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((ip, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self._used.add(port)
            return sock
        raise RuntimeError("no free RTP port in the configured range")

    def forget(self, port: int) -> None:
        """Give back a port whose socket was closed elsewhere."""
        self._used.discard(port)

    def release(self, sock: socket.socket) -> None:
        try:
            self._used.discard(sock.getsockname()[1])
        finally:
            sock.close()


def packets(payload: bytes, payload_type: int, ssrc: int, seq: int, ts: int) -> list[bytes]:
    """Split ``payload`` into 20 ms RTP packets; the marker bit is set on the first one."""
    out: list[bytes] = []
    for i in range(0, len(payload), FRAME_BYTES):
        chunk = payload[i : i + FRAME_BYTES]
        marker = 0x80 if i == 0 else 0
        header = struct.pack(
            "!BBHII",
            0x80,
            marker | payload_type,
            (seq + len(out)) & 0xFFFF,
            (ts + i) & 0xFFFFFFFF,
            ssrc,
        )
        out.append(header + chunk)
    return out


def rtp_source(sock: socket.socket) -> tuple[str, int] | None:
    """Where the far end's RTP comes from, if any arrived on ``sock`` (read and dropped)."""
    source = None
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return source
        except OSError:  # e.g. ICMP port unreachable reported on the socket
            return source
        if len(data) >= 12 and data[0] >> 6 == 2:  # RTP version 2
            source = (addr[0], addr[1])


async def send_paced(
    sock: socket.socket,
    dest: tuple[str, int],
    payload: bytes,
    payload_type: int,
    protect: Callable[[bytes], bytes] | None = None,
    *,
    symmetric: bool = False,
) -> int:
    """Send ``payload`` as RTP at real time (absolute deadlines, so no drift). Returns the
    number of packets sent. ``protect`` turns each packet into SRTP (srtp.py).
    ``symmetric``: once the far end's RTP arrives, send to where it comes from (RFC 4961;
    behind NAT the SDP's address may not reach it)."""
    pkts = packets(
        payload,
        payload_type,
        ssrc=int.from_bytes(os.urandom(4), "big"),
        seq=random.randint(0, 0xFFFF),
        ts=random.randint(0, 0xFFFFFFFF),
    )
    start = time.monotonic()
    if protect is not None:
        pkts = [protect(p) for p in pkts]
    for n, pkt in enumerate(pkts):
        delay = start + n * PTIME_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if symmetric:
            dest = rtp_source(sock) or dest
        # A full send buffer drops a frame, like the network would.
        with contextlib.suppress(BlockingIOError, InterruptedError):
            sock.sendto(pkt, dest)
    return len(pkts)


class MediaSink(asyncio.DatagramProtocol):
    """The RTP port flash calls offer: bound (so early media has somewhere to go, as RFC
    3264 wants of an offerer), read and dropped. Flash calls never send media."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
