"""The few SDP lines we need: an audio offer (PCMU, PCMA) and reading the answer."""

from __future__ import annotations

import random
from dataclasses import dataclass

CODECS = {0: "PCMU", 8: "PCMA"}


def offer(
    ip: str,
    port: int,
    payload_types: list[int],
    session_id: int | None = None,
    *,
    session_name: str = "opencaller",
    crypto: str | None = None,
) -> bytes:
    """An audio offer (RFC 4566/3264): sendrecv on ``ip:port``, our payload types in order.
    Also used as the answer to a late offer, with the one payload type chosen. With
    ``crypto`` (an SDES key, srtp.py) the stream is ``RTP/SAVP`` with that ``a=crypto``."""
    sid = session_id if session_id is not None else random.randint(1, 2**31)
    fmts = " ".join(str(pt) for pt in payload_types)
    lines = [
        "v=0",
        f"o=opencaller {sid} {sid} IN IP4 {ip}",
        f"s={session_name}",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {port} {'RTP/SAVP' if crypto else 'RTP/AVP'} {fmts}",
        *(f"a=rtpmap:{pt} {CODECS[pt]}/8000" for pt in payload_types),
        *([f"a=crypto:{crypto}"] if crypto else []),
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass(frozen=True, slots=True)
class Answer:
    ip: str
    port: int
    payload_type: int  # the first payload type of ours the answer accepted
    crypto: tuple[str, ...] = ()  # the audio stream's a=crypto values (SDES), if any


def parse_answer(body: bytes, offered: list[int]) -> Answer | None:
    session_ip: str | None = None
    media_ip: str | None = None
    port: int | None = None
    fmts: list[int] = []
    crypto: list[str] = []
    in_audio = False
    for raw in body.decode(errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("m="):
            in_audio = line.startswith("m=audio ") and port is None
            if in_audio:
                bits = line[2:].split()
                port = int(bits[1].split("/")[0])
                fmts = [int(f) for f in bits[3:] if f.isdigit()]
        elif line.startswith("a=crypto:") and in_audio:
            crypto.append(line[len("a=crypto:") :])
        elif line.startswith("c=") and line.split()[-1:]:
            addr = line.split()[-1].split("/")[0]
            if in_audio:
                media_ip = addr
            elif port is None:
                session_ip = addr
    ip = media_ip or session_ip
    if ip is None or port is None or port == 0:
        return None
    chosen = next((pt for pt in fmts if pt in offered), None)
    if chosen is None:
        return None
    return Answer(ip=ip, port=port, payload_type=chosen, crypto=tuple(crypto))


def answer_offer(
    body: bytes, ip: str, port: int, supported: list[int], *, session_name: str = "opencaller"
) -> bytes:
    """Our answer to an SDP offer (RFC 3264 §6): the first of the offer's payload types we
    support, on ``ip:port``; with none in common the audio stream is refused (port 0)."""
    chosen = parse_answer(body, supported)
    if chosen is not None:
        return offer(ip, port, [chosen.payload_type], session_name=session_name)
    lines = [
        "v=0",
        f"o=opencaller {random.randint(1, 2**31)} 1 IN IP4 {ip}",
        f"s={session_name}",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio 0 RTP/AVP {supported[0]}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
