"""Voice code (RTP to a sink the test owns), mix policy, and inbound calls from SIPp."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest

from opencaller.telephony.audio import build_prompt
from opencaller.telephony.base import CallKind, CallRequest, InboundCall, Outcome

from .helpers import provider, trunk
from .sipp import Sipp

pytestmark = pytest.mark.sip


class RtpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append(data)


async def open_sink() -> tuple[asyncio.DatagramTransport, RtpSink, int]:
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(
        RtpSink, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    return transport, sink, transport.get_extra_info("sockname")[1]


def unpack(packets: list[bytes]) -> tuple[bytes, list[int], list[int], list[int]]:
    payload, pts, seqs, stamps = b"", [], [], []
    for pkt in packets:
        b0, b1, seq, ts, _ssrc = struct.unpack("!BBHII", pkt[:12])
        assert b0 >> 6 == 2
        pts.append(b1 & 0x7F)
        seqs.append(seq)
        stamps.append(ts)
        payload += pkt[12:]
    return payload, pts, seqs, stamps


async def test_voice_code_is_spoken_over_rtp(sipp: Sipp) -> None:
    transport, sink, rtp_port = await open_sink()
    far = sipp.start("uas_answer.xml", calls=1, keys={"rtp_port": str(rtp_port)})
    p = provider(trunk("main", far.port))
    await p.start()
    try:
        rep = await p.place_call(
            CallRequest(1, "79161234567", "4719", kind=CallKind.VOICE, language="ru")
        )
    finally:
        await p.close()
        transport.close()
    far.assert_ok()
    assert rep.outcome is Outcome.ANSWERED and rep.sip_code == 200
    assert rep.kinds_tried == (CallKind.VOICE,)
    payload, pts, seqs, stamps = unpack(sink.packets)
    expected = build_prompt("4719", "ru")  # the code said twice
    assert len(expected) % 160 == 0 and len(expected) > 8000 * 4
    assert payload == expected
    assert set(pts) == {0}
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(len(seqs)))
    assert [(t - stamps[0]) & 0xFFFFFFFF for t in stamps] == [160 * i for i in range(len(seqs))]
    assert len(far.lines("BYE")) == 1
    offer = far.lines("INVITE")[0]
    assert offer["offer_pts"] == "0"  # "0 8" is split by the log's spaces
    assert sink.packets[0][1] & 0x80  # marker on the first packet


async def test_mix_falls_back_to_voice(sipp: Sipp) -> None:
    transport, sink, rtp_port = await open_sink()
    far = sipp.start("uas_mix.xml", calls=2, keys={"rtp_port": str(rtp_port)})
    p = provider(trunk("main", far.port))
    await p.start()
    try:
        rep = await p.place_call(
            CallRequest(1, "79161234567", "1234", kind=CallKind.MIX, language="en")
        )
    finally:
        await p.close()
        transport.close()
    far.assert_ok()
    assert rep.kinds_tried == (CallKind.FLASH, CallKind.VOICE)
    assert rep.outcome is Outcome.ANSWERED
    assert unpack(sink.packets)[0] == build_prompt("1234", "en")
    invites = far.lines("INVITE")
    # Both INVITEs offer SDP; the flash call's session says which one it is.
    assert [(bool(i["offer_port"]), i["flash"]) for i in invites] == [(True, "flash"), (True, "")]


async def test_inbound_call_is_reported_and_declined(sipp: Sipp, tmp_path: Path) -> None:
    got: list[InboundCall] = []

    async def handler(call: InboundCall) -> None:
        got.append(call)

    p = provider(trunk("main", 9))
    p.on_inbound(handler)
    await p.start()
    csv = tmp_path / "numbers.csv"
    csv.write_text(
        "SEQUENTIAL\n"
        "79005550101;74950000001;111\n"
        "79005550102;74950000002;222\n"
        "79005550103;74950000001;333\n"
    )
    try:
        caller = sipp.start(
            "uac_inbound.xml", calls=3, inf=csv, rate=10, remote=f"127.0.0.1:{p.port}"
        )
        await asyncio.to_thread(caller.assert_ok, 60)
        for _ in range(50):
            if len(got) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await p.close()
    assert sorted(c.caller for c in got) == ["79005550101", "79005550102", "79005550103"]
    assert {c.called for c in got} == {"74950000001", "74950000002"}
    assert all(c.call_id for c in got)
    assert len(caller.lines("FINAL")) == 3


async def test_options_get_200(sipp: Sipp) -> None:
    p = provider(trunk("main", 9))
    await p.start()
    try:
        probe = sipp.start("uac_options.xml", calls=2, rate=10, remote=f"127.0.0.1:{p.port}")
        await asyncio.to_thread(probe.assert_ok, 30)
    finally:
        await p.close()


def test_confirmation_number_comes_from_the_inbound_pool() -> None:
    p = provider(trunk("main", 9))
    n = p.confirmation_number("79161234567")
    assert n in {"74950000001", "74950000002"}
    assert p.confirmation_number("79161234567") == n  # stable per caller
    assert provider(trunk("main", 9), inbound_numbers=[]).confirmation_number("7916") is None
