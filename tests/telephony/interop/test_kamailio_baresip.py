"""Calls placed through the public API reach a real phone (baresip) registered at a real
operator SBC (Kamailio: registrar, digest auth, record-routing), over UDP, TCP and TLS.

What is asserted is what the subscriber sees: the number the phone shows ends in the code, a
flash call stops ringing without being answered, a voice call is answered and the phone
hears the prompt (baresip records what it received to a WAV file).
"""

from __future__ import annotations

import re
import shutil
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opencaller.config import Settings
from opencaller.domain.clock import Clock
from opencaller.telephony.audio import build_prompt

from ...support import Api, make_api
from ..dnsmasq import DNSMASQ, Dnsmasq
from .servers import (
    BARESIP,
    DOMAIN,
    KAMAILIO,
    SBC_NAME,
    Baresip,
    CertAuthority,
    Issued,
    Kamailio,
    free_port,
    kamailio_modules,
)

pytestmark = [
    pytest.mark.sip,
    pytest.mark.skipif(
        not Path(KAMAILIO).exists() or kamailio_modules() is None,
        reason="kamailio with its TLS module is not installed "
        "(apt-get install kamailio kamailio-tls-modules)",
    ),
    pytest.mark.skipif(
        shutil.which(BARESIP) is None, reason="baresip is not installed (apt-get install baresip)"
    ),
]

RINGS = "79161234567"  # the phone that only rings (flash calls)
ANSWERS = "79161234568"  # the phone that answers at once (voice calls)
ALSO_RINGS = "79161234569"  # a second ringing line (the same number twice is refused)
SECURE = "79161234560"  # answers at once, and only with SRTP (SDES)
HANGS_UP = "79161234561"  # a phone of its own that answers and hangs up after 2 s
TRUNK_USER, TRUNK_PASSWORD = "opencaller", "trunk-secret"


def ulaw2lin(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to 16-bit samples (the prompt as the phone should hear it)."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


class Sbc:
    def __init__(self, kamailio: Kamailio, phone: Baresip, ca: CertAuthority, tmp: Path) -> None:
        self.kamailio, self.phone, self.ca, self.tmp = kamailio, phone, ca, tmp

    def trunk(self, transport: str, **extra: Any) -> dict[str, Any]:
        port = {
            "udp": self.kamailio.udp_port,
            "tcp": self.kamailio.tcp_port,
            "tls": self.kamailio.tls_port,
        }[transport]
        trunk: dict[str, Any] = {
            "name": "sbc",
            "host": "127.0.0.1",
            "port": port,
            "transport": transport,
            "username": TRUNK_USER,
            "password": TRUNK_PASSWORD,
            "from_domain": DOMAIN,
            "ring_hold_s": 1.0,
            "progress_timeout_s": 8.0,
            "answer_timeout_s": 10.0,
            "cps": 20,
        }
        if transport == "tls":
            trunk |= {"tls_ca_file": str(self.ca.files.cert), "tls_server_name": SBC_NAME}
        return trunk | extra


@pytest.fixture
def sbc(tmp_path: Path) -> Iterator[Sbc]:
    ca = CertAuthority(tmp_path / "ca")
    cert: Issued = ca.issue(tmp_path / "sbc-cert", SBC_NAME)
    users = {
        RINGS: "phone-secret",
        ANSWERS: "phone-secret",
        ALSO_RINGS: "phone-secret",
        SECURE: "phone-secret",
        HANGS_UP: "phone-secret",
        TRUNK_USER: TRUNK_PASSWORD,
    }
    kamailio = Kamailio(tmp_path / "kamailio", users, cert)
    phone: Baresip | None = None
    try:
        kamailio.start()
        outbound = f'outbound="sip:127.0.0.1:{kamailio.udp_port}"'
        phone = Baresip(
            tmp_path / "phone",
            [
                f"<sip:{RINGS}@{DOMAIN}>;auth_pass=phone-secret;{outbound};regint=600",
                f"<sip:{ALSO_RINGS}@{DOMAIN}>;auth_pass=phone-secret;{outbound};regint=600",
                f"<sip:{SECURE}@{DOMAIN}>;auth_pass=phone-secret;{outbound};regint=600;"
                "answermode=auto;mediaenc=srtp-mand",
                f"<sip:{ANSWERS}@{DOMAIN}>;auth_pass=phone-secret;{outbound};regint=600;"
                "answermode=auto",
            ],
        )
        phone.start(registered=4)
        yield Sbc(kamailio, phone, ca, tmp_path)
    finally:
        if phone is not None:
            phone.stop()
        kamailio.stop()


@asynccontextmanager
async def api_with(settings: Settings, trunk: dict[str, Any], **extra: Any) -> AsyncIterator[Api]:
    sip = {
        "bind_ip": "127.0.0.1",
        "local_ip": "127.0.0.1",
        "port": 0,
        "rtp_port_min": 44000,
        "rtp_port_max": 44999,
        "trunks": [trunk],
        "caller_ids": {"prefixes": ["7900555"]},
        **extra,
    }
    s = settings.model_copy(update={"provider": "sip", "sip": sip})
    async with make_api(s, Clock()) as api:
        yield api


def incoming_callers(phone: Baresip) -> list[str]:
    """The numbers the phone showed for incoming calls, as digits."""
    return re.findall(r"Incoming call from: +\S* ?<?sip:\+?([0-9]+)@", phone.log_text())


def first_lines(phone: Baresip) -> list[str]:
    """Request and status lines of the call's SIP messages at the phone (no REGISTERs)."""
    lines = [m.splitlines()[0] for m in phone.sip_trace() if "REGISTER" not in m]
    return [ln.split(" sip:")[0] if not ln.startswith("SIP/") else ln for ln in lines]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_flash_call_rings_the_phone_from_a_number_ending_in_the_code(
    sbc: Sbc, settings: Settings, transport: str
) -> None:
    async with api_with(settings, sbc.trunk(transport)) as api:
        body = await api.get("initCall", phone=RINGS, code="4719")
        info = await api.wait_final(body["ucaller_id"], within_s=30)
    # The phone rang, showing our number that ends in the code, and stopped ringing
    # because we cancelled: nobody answered.
    sbc.phone.wait_for(r"Incoming call from", what="an incoming call")
    sbc.phone.wait_for(r"session closed", what="the end of the call")
    assert incoming_callers(sbc.phone) == ["79005554719"]
    assert first_lines(sbc.phone) == [
        "INVITE",
        "SIP/2.0 180 Ringing",
        "CANCEL",
        "SIP/2.0 200 OK",  # to the CANCEL
        "SIP/2.0 487 Request Terminated",
        "ACK",
    ]
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (1, "delivered", 180)
    relayed = [ln for ln in sbc.kamailio.log_text().splitlines() if "RELAY INVITE" in ln]
    assert len(relayed) == 1 and "+79005554719" in relayed[0]


@pytest.mark.parametrize(
    ("transport", "srtp", "phone"),
    [("udp", "off", ANSWERS), ("tls", "off", ANSWERS), ("tls", "sdes", SECURE)],
)
async def test_voice_call_is_answered_and_the_phone_hears_the_prompt(
    sbc: Sbc, settings: Settings, transport: str, srtp: str, phone: str
) -> None:
    """With ``srtp``, the phone accepts only SRTP: hearing the prompt means it decrypted it."""
    async with api_with(settings, sbc.trunk(transport, srtp=srtp)) as api:
        body = await api.post_json("initCall", {"phone": phone, "code": "4719", "voice": True})
        info = await api.wait_final(body["ucaller_id"], within_s=60)
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (1, "answered", 200)
    sbc.phone.wait_for(r"session closed", what="our BYE")
    assert first_lines(sbc.phone)[-2:] == ["BYE", "SIP/2.0 200 OK"]
    answered = re.findall(r"Call established: sip:\+?([0-9]+)@", sbc.phone.log_text())
    assert answered == ["79005554719"]
    heard = received_audio(sbc.phone)
    prompt = ulaw2lin(build_prompt("4719", "ru")).astype(np.float64)
    # The phone heard as long as the prompt lasts (give or take its jitter buffer and the
    # moments before the first and after the last packet) ...
    assert abs(len(heard) / 8000 - len(prompt) / 8000) < 1.5
    # ... and at the level it was said (G.711 both ways: the same loudness within 2x).
    level = float(np.sqrt(np.mean(heard.astype(np.float64) ** 2)))
    said = float(np.sqrt(np.mean(prompt**2)))
    assert said / 2 < level < said * 2


def received_audio(phone: Baresip) -> np.ndarray[Any, np.dtype[np.int16]]:
    """What baresip decoded from the RTP it received (sndfile's "-dec" dump), at 8 kHz."""
    files = sorted(phone.rec_dir.glob("*dec*.wav"))
    assert files, f"no recording in {list(phone.rec_dir.iterdir())}"
    with wave.open(str(files[-1])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


@pytest.mark.parametrize("wrong", ["unknown_ca", "name_mismatch"])
async def test_tls_refuses_a_certificate_it_cannot_trust(
    sbc: Sbc, settings: Settings, wrong: str
) -> None:
    if wrong == "unknown_ca":
        other = CertAuthority(sbc.tmp / "other-ca", name="someone else's CA")
        trunk = sbc.trunk("tls", tls_ca_file=str(other.files.cert))
    else:
        trunk = sbc.trunk("tls", tls_server_name="other.opencaller.test")
    async with api_with(settings, trunk) as api:
        body = await api.get("initCall", phone=RINGS, code="4719")
        info = await api.wait_final(body["ucaller_id"], within_s=30)
    assert (info["call_status"], info["call_outcome"]) == (0, "network_error"), info
    assert "certificate verify failed" in info["sip_reason"], info
    assert "INVITE" not in sbc.kamailio.log_text()
    assert incoming_callers(sbc.phone) == []


@pytest.mark.skipif(shutil.which(DNSMASQ) is None, reason="dnsmasq is not installed")
async def test_tcp_trunk_found_by_srv_skips_a_dead_target_and_reuses_its_connection(
    sbc: Sbc, settings: Settings
) -> None:
    """SRV names two targets: the first refuses connections, the second is the SBC. Both
    calls reach the phone, and the SBC sees them come over one TCP connection."""
    dead = free_port()  # nothing listens there: the connection is refused
    dns = Dnsmasq(
        sbc.tmp / "dns",
        [
            f"srv-host=_sip._tcp.sbc.test,dead.sbc.test,{dead},10,10",
            f"srv-host=_sip._tcp.sbc.test,live.sbc.test,{sbc.kamailio.tcp_port},20,10",
            "host-record=dead.sbc.test,127.0.0.1",
            "host-record=live.sbc.test,127.0.0.1",
        ],
    ).start()
    trunk = sbc.trunk("tcp", host="sbc.test")
    del trunk["port"]  # no port: RFC 3263 asks DNS for NAPTR and SRV
    try:
        async with api_with(settings, trunk, dns_nameservers=[dns.nameserver]) as api:
            infos = []
            for phone, code in ((RINGS, "4719"), (ALSO_RINGS, "0038")):
                body = await api.get("initCall", phone=phone, code=code)
                assert "ucaller_id" in body, body
                infos.append(await api.wait_final(body["ucaller_id"], within_s=30))
    finally:
        dns.stop()
    assert [(i["call_status"], i["call_outcome"]) for i in infos] == [(1, "delivered")] * 2
    sbc.phone.wait_for(r"session closed", count=2, what="the end of both calls")
    assert incoming_callers(sbc.phone) == ["79005554719", "79005550038"]
    sources = re.findall(r"REQ INVITE \S+ from \S+ via tcp (\S+)", sbc.kamailio.log_text())
    assert len(sources) == 4  # each call: the INVITE, then again with the digest answer
    assert len(set(sources)) == 1  # all from one connection (one source port)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_the_phone_hangs_up_first_and_its_bye_reaches_us(
    sbc: Sbc, settings: Settings, transport: str
) -> None:
    """The phone answers and hangs up while the prompt still plays: its BYE goes through the
    SBC (record-routed) back to us over TCP/TLS, and we answer it and stop."""
    outbound = f'outbound="sip:127.0.0.1:{sbc.kamailio.udp_port}"'
    short = Baresip(
        sbc.tmp / "short-phone",
        [f"<sip:{HANGS_UP}@{DOMAIN}>;auth_pass=phone-secret;{outbound};regint=600;answermode=auto"],
        mic_s=2.0,
    )
    try:
        short.start(registered=1)
        async with api_with(settings, sbc.trunk(transport)) as api:
            body = await api.post_json(
                "initCall", {"phone": HANGS_UP, "code": "4719", "voice": True}
            )
            info = await api.wait_final(body["ucaller_id"], within_s=60)
        # Its BYE and the answer to it, both in the phone's SIP trace.
        short.wait_for(r"^CSeq: \d+ BYE", count=2, what="the BYE and its answer")
        trace = short.sip_trace()
    finally:
        short.stop()
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (1, "answered", 200)
    byes = [ln for ln in sbc.kamailio.log_text().splitlines() if "REQ BYE" in ln]
    assert len(byes) == 1 and f"from sip:{HANGS_UP}@" in byes[0]  # the phone's, not ours
    bye_answers = [
        t for t in trace if t.startswith("SIP/2.0 ") and re.search(r"^CSeq: \d+ BYE", t, re.M)
    ]
    assert [t.splitlines()[0] for t in bye_answers] == ["SIP/2.0 200 OK"]


async def test_an_srtp_trunk_never_sends_clear_audio_to_a_phone_without_srtp(
    sbc: Sbc, settings: Settings
) -> None:
    """The trunk requires SRTP; this phone has none: it refuses the offer (488), nothing is
    answered, nothing is recorded, and the call is not counted as heard."""
    async with api_with(settings, sbc.trunk("tls", srtp="sdes")) as api:
        body = await api.post_json("initCall", {"phone": ANSWERS, "code": "4719", "voice": True})
        info = await api.wait_final(body["ucaller_id"], within_s=60)
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (
        0,
        "rejected",
        488,
    ), info
    assert "SIP/2.0 488 Not Acceptable Here" in first_lines(sbc.phone)
    assert list(sbc.phone.rec_dir.glob("*dec*.wav")) == []
