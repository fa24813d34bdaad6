"""SRTP with SDES keys: the offer, the encryption (libsrtp through pylibsrtp), and a far end
that answers plain RTP to an SRTP offer (SIPp): the call ends before any audio goes out."""

from __future__ import annotations

import asyncio
import base64
import struct

import pylibsrtp
import pytest

from opencaller.telephony.base import CallKind, CallRequest, Outcome
from opencaller.telephony.sip.sdp import offer, parse_answer
from opencaller.telephony.sip.srtp import SUITE, SdesKey

from .helpers import provider, trunk
from .sipp import Sipp

pytestmark = pytest.mark.sip


def test_the_offer_is_savp_with_our_key() -> None:
    key = SdesKey.new()
    body = offer("192.0.2.1", 40000, [0, 8], crypto=key.attribute).decode()
    assert "m=audio 40000 RTP/SAVP 0 8\r\n" in body
    line = next(ln for ln in body.splitlines() if ln.startswith("a=crypto:"))
    tag, suite, inline = line[len("a=crypto:") :].split()
    assert (tag, suite) == ("1", SUITE)
    assert base64.b64decode(inline.removeprefix("inline:")) == key.key
    assert len(key.key) == 30  # 128-bit master key + 112-bit salt


def test_the_answer_must_take_our_tag_and_suite() -> None:
    key = SdesKey.new()
    answer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/SAVP 0\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    )
    media = parse_answer(answer, [0, 8])
    assert media is not None and key.accepted_by(list(media.crypto))
    other_suite = answer.replace(b"1 AES_CM_128_HMAC_SHA1_80", b"1 AES_CM_128_HMAC_SHA1_32")
    other = parse_answer(other_suite, [0, 8])
    assert other is not None and not key.accepted_by(list(other.crypto))
    plain = parse_answer(answer.replace(b"RTP/SAVP", b"RTP/AVP").split(b"a=crypto")[0], [0])
    assert plain is not None and not key.accepted_by(list(plain.crypto))


def test_packets_are_encrypted_so_the_far_end_can_decrypt_them() -> None:
    key = SdesKey.new()
    payload = bytes(range(160))
    rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + payload
    protected = key.protector()(rtp)
    assert payload not in protected and len(protected) == len(rtp) + 10  # 80-bit tag
    far_end = pylibsrtp.Session(
        pylibsrtp.Policy(
            key=key.key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )
    assert far_end.unprotect(protected) == rtp


class RtpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets += 1


async def test_a_plain_rtp_answer_to_an_srtp_offer_ends_the_call_unheard(sipp: Sipp) -> None:
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
    rtp_port = transport.get_extra_info("sockname")[1]
    far = sipp.start("uas_answer_plain_rtp.xml", calls=1, keys={"rtp_port": str(rtp_port)})
    p = provider(trunk("main", far.port, srtp="sdes"))
    await p.start()
    try:
        rep = await p.place_call(
            CallRequest(1, "79161234567", "4719", kind=CallKind.VOICE, language="ru")
        )
        await asyncio.sleep(0.3)  # any RTP that had gone out would be here by now
    finally:
        await p.close()
        transport.close()
    await asyncio.to_thread(far.assert_ok)
    assert (rep.outcome, rep.sip_code, rep.reason) == (
        Outcome.REJECTED,
        488,
        "the answer did not take SRTP",
    )
    [invite] = far.lines("INVITE")
    assert (invite["profile"], invite["crypto_tag"], invite["suite"]) == ("RTP/SAVP", "1", SUITE)
    assert len(far.lines("BYE")) == 1
    assert sink.packets == 0
