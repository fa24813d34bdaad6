"""Behind NAT: the public address in Via, Contact and SDP, rport in Via (SIPp checks what
went on the wire), and symmetric RTP (real sockets)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from opencaller.telephony.base import CallKind, CallRequest, Outcome
from opencaller.telephony.sip.rtp import send_paced

from .helpers import provider, trunk, until
from .sipp import Sipp

pytestmark = pytest.mark.sip

PUBLIC_IP = "192.0.2.44"  # TEST-NET-1: nothing answers there, SIPp only reads it


async def test_public_address_in_via_contact_and_sdp_with_rport(sipp: Sipp) -> None:
    far = sipp.start("uas_nat_ring.xml", calls=1)
    p = provider(trunk("nat", far.port), public_ip=PUBLIC_IP, public_port=5999)
    await p.start()
    try:
        rep = await p.place_call(
            CallRequest(ucaller_id=1, destination="79161234567", code="4719", kind=CallKind.FLASH)
        )
    finally:
        await p.close()
    far.assert_ok()
    assert rep.outcome is Outcome.DELIVERED, rep
    [invite] = far.lines("INVITE")
    assert invite["sent_by"] == f"{PUBLIC_IP}:5999"
    assert invite["rport"] == "rport"
    assert invite["contact"] == f"{PUBLIC_IP}:5999"
    assert (invite["c"], invite["o"]) == (PUBLIC_IP, PUBLIC_IP)


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def test_symmetric_rtp_follows_where_the_far_end_sends_from() -> None:
    ours, announced, actual = udp(), udp(), udp()  # the SDP says one port, RTP comes from another
    try:
        actual.sendto(bytes([0x80, 0]) + bytes(170), ours.getsockname())
        actual.sendto(b"not rtp", ours.getsockname())  # ignored: not RTP version 2
        await asyncio.sleep(0.05)
        sent = await send_paced(ours, announced.getsockname(), bytes(160 * 5), 0, symmetric=True)
        assert (_drain(announced), _drain(actual)) == (0, sent)
    finally:
        for s in (ours, announced, actual):
            s.close()


async def test_without_symmetric_rtp_the_sdp_address_is_kept() -> None:
    ours, announced, actual = udp(), udp(), udp()
    try:
        actual.sendto(bytes([0x80, 0]) + bytes(170), ours.getsockname())
        await asyncio.sleep(0.05)
        sent = await send_paced(ours, announced.getsockname(), bytes(160 * 5), 0)
        assert (_drain(announced), _drain(actual)) == (sent, 0)
    finally:
        for s in (ours, announced, actual):
            s.close()


def _drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recvfrom(2048)
        except BlockingIOError:
            return n
        n += 1


async def test_registration_takes_the_address_the_registrar_saw(sipp: Sipp) -> None:
    reg = sipp.start(
        "uas_register_nat.xml",
        calls=10_000,
        keys={"expires": "600"},
        extra=["-deadcall_wait", "1"],
    )
    p = provider(trunk("nat-reg", reg.port, registration=True, username="oc"))
    await p.start()
    try:
        await until(lambda: p.trunk_status()[0].registered is True)
    finally:
        await p.close()
    contacts = [r["contact"] for r in reg.lines("REGISTER")]
    # Registered as seen from outside; unregistered the same binding at shutdown.
    assert contacts == [f"oc@127.0.0.1:{p.port}", "oc@198.51.100.7:40000", "oc@198.51.100.7:40000"]
    assert [r["asked"] for r in reg.lines("REGISTER")] == ["3600", "3600", "0"]
