"""SIP over TCP: framing of the byte stream, one reused connection per trunk target, reopening
a lost one, and no retransmissions on a reliable transport (SIPp as the far end over TCP)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from opencaller.telephony.base import CallKind, CallRequest, InboundCall, Outcome
from opencaller.telephony.sip.streams import FramingError, split_messages
from opencaller.telephony.sip.targets import MAX_REMEMBERED, TargetHealth

from .helpers import provider, trunk
from .interop.servers import CertAuthority, free_port
from .sipp import Sipp

pytestmark = pytest.mark.sip

TCP = ["-t", "t1"]  # SIPp: one TCP connection for all calls


def req(code: str, n: int = 1, dest: str = "79161234567") -> CallRequest:
    return CallRequest(ucaller_id=n, destination=dest, code=code, kind=CallKind.FLASH)


def msg(first: str, body: bytes = b"", length_header: str = "Content-Length") -> bytes:
    head = f"{first}\r\nCall-ID: x\r\n{length_header}: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_stream_framing_by_content_length() -> None:
    a = msg("SIP/2.0 180 Ringing")
    b = msg("SIP/2.0 200 OK", b"v=0\r\n", length_header="l")  # the compact form
    buf = bytearray(b"\r\n\r\n" + a + b[:20])  # a keep-alive, a message, half of the next
    assert split_messages(buf) == [a]
    buf += b[20:] + b"\r\n"
    assert split_messages(buf) == [b]
    assert buf == b"\r\n" or buf == b""  # a trailing keep-alive waits for what follows


@pytest.mark.parametrize(
    "bad",
    [
        b"SIP/2.0 180 Ringing\r\nCall-ID: x\r\n\r\n",  # no Content-Length on a stream
        b"SIP/2.0 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"X" * (70 * 1024),  # no end of headers in sight
    ],
)
def test_stream_that_cannot_be_framed_is_refused(bad: bytes) -> None:
    with pytest.raises(FramingError):
        split_messages(bytearray(bad))


async def test_flash_calls_over_tcp_share_one_connection(sipp: Sipp) -> None:
    far = sipp.start("uas_ring_cancel.xml", calls=2, extra=TCP)
    p = provider(trunk("main", far.port, transport="tcp"))
    await p.start()
    try:
        reps = [await p.place_call(req(c, i)) for i, c in enumerate(["4719", "0038"])]
        connects = p.transport.streams.connects
    finally:
        await p.close()
    await asyncio.to_thread(far.assert_ok)
    assert [(r.outcome, r.sip_code) for r in reps] == [(Outcome.DELIVERED, 180)] * 2
    assert [r["from_num"] for r in far.lines("INVITE")] == ["79005554719", "79005550038"]
    assert len(far.lines("CANCEL")) == 2
    assert connects == 1


async def test_a_lost_connection_is_reopened_for_the_next_call(sipp: Sipp) -> None:
    first = sipp.start("uas_ring_cancel.xml", calls=1, extra=TCP)
    p = provider(trunk("main", first.port, transport="tcp"))
    await p.start()
    try:
        one = await p.place_call(req("4719", 1))
        await asyncio.to_thread(first.assert_ok)  # SIPp exits: the connection is gone
        second = sipp.start("uas_ring_cancel.xml", calls=1, extra=TCP, port=first.port)
        two = await p.place_call(req("0038", 2))
        connects = p.transport.streams.connects
    finally:
        await p.close()
    await asyncio.to_thread(second.assert_ok)
    assert (one.outcome, two.outcome) == (Outcome.DELIVERED, Outcome.DELIVERED)
    assert [r["from_num"] for r in second.lines("INVITE")] == ["79005550038"]
    assert connects == 2


async def test_nothing_is_retransmitted_over_tcp(sipp: Sipp) -> None:
    """A silent trunk: over UDP the INVITE would be sent again at 0.5, 1.5 and 3.5 s."""
    far = sipp.start("uas_silent.xml", calls=1, extra=TCP)
    p = provider(trunk("main", far.port, transport="tcp", progress_timeout_s=4.0))
    await p.start()
    try:
        rep = await p.place_call(req("4719"))
    finally:
        await p.close()
    far.kill()
    assert rep.outcome is Outcome.NETWORK_ERROR and rep.sip_code is None
    assert len(far.lines("INVITE")) == 1
    assert far.lines("RETRANS") == []


async def test_a_refused_connection_fails_the_call_at_once(sipp: Sipp) -> None:
    """Nobody listens: the transport error ends the INVITE (no waiting for Timer B), and the
    call fails over to the next trunk."""
    far = sipp.start("uas_ring_cancel.xml", calls=1)
    closed = sipp.start("uas_ring_cancel.xml", calls=1)  # its UDP port; no TCP listens there
    closed.kill()
    p = provider(
        trunk("down", closed.port, transport="tcp", progress_timeout_s=30.0),
        trunk("up", far.port),
    )
    await p.start()
    try:
        rep = await p.place_call(req("4719"))
    finally:
        await p.close()
    await asyncio.to_thread(far.assert_ok)
    assert (rep.outcome, rep.sip_code) == (Outcome.DELIVERED, 180)
    assert rep.reason.startswith("down: ")
    assert "Connect call failed" in rep.reason or "refused" in rep.reason.lower()


async def test_inbound_calls_over_tcp_are_answered_on_their_connection(sipp: Sipp) -> None:
    """A caller opens a TCP connection to our SIP port (SIPp listens on no other): the 180
    and 603 come back on it, and the caller is reported."""
    got: list[InboundCall] = []

    async def handler(call: InboundCall) -> None:
        got.append(call)

    p = provider(trunk("main", 9, transport="tcp"))
    p.on_inbound(handler)
    await p.start()
    csv = Path(sipp.workdir) / "inbound_tcp.csv"
    csv.write_text("SEQUENTIAL\n79005550101;74950000001;111\n79005550102;74950000002;222\n")
    try:
        caller = sipp.start(
            "uac_inbound.xml", calls=2, inf=csv, rate=10, remote=f"127.0.0.1:{p.port}", extra=TCP
        )
        await asyncio.to_thread(caller.assert_ok, 60)
        for _ in range(50):
            if len(got) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await p.close()
    assert sorted(c.caller for c in got) == ["79005550101", "79005550102"]
    assert len(caller.lines("FINAL")) == 2


async def test_our_tls_listener_answers_with_our_certificate(tmp_path: Path) -> None:
    """With a certificate set, we accept TLS on ``tls_port``: a client that trusts our CA
    gets its OPTIONS answered over TLS."""
    ca = CertAuthority(tmp_path / "ca")
    ours = ca.issue(tmp_path / "ours", "sip.opencaller.test")
    tls_port = free_port()
    p = provider(
        trunk("main", 9),
        tls_port=tls_port,
        tls_cert_file=str(ours.cert),
        tls_key_file=str(ours.key),
    )
    await p.start()
    try:
        ctx = ssl.create_default_context(cafile=str(ca.files.cert))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=ctx, server_hostname="sip.opencaller.test"
        )
        writer.write(
            b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKprobe1\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:probe@example.test>;tag=1\r\n"
            b"To: <sip:127.0.0.1>\r\nCall-ID: probe1\r\nCSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
    finally:
        await p.close()
    assert head.startswith(b"SIP/2.0 200 ")
    assert b"CSeq: 1 OPTIONS" in head


def test_target_health_orders_and_forgets_with_a_bound() -> None:
    now = [100.0]
    health = TargetHealth(down_s=30, clock=lambda: now[0])
    targets = ["a", "b", "c"]
    health.failed("a")
    assert health.order(targets, str) == ["b", "c", "a"]  # down: still tried, last
    now[0] += 31
    assert health.order(targets, str) == ["a", "b", "c"]  # the 30 s are over
    health.failed("b")
    health.answered("b")
    assert not health.is_down("b")
    for i in range(5000):  # addresses from a DNS that rotates through many
        health.failed(f"x{i}")
    assert len(health) <= MAX_REMEMBERED
    assert health.is_down("x4999")
