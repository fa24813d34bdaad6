"""The few SDP lines we need: an audio offer (PCMU, PCMA) and reading the answer."""

from __future__ import annotations

import random
from dataclasses import dataclass

CODECS = {0: "PCMU", 8: "PCMA"}


def offer(ip: str, port: int, payload_types: list[int], session_id: int | None = None) -> bytes:
    sid = session_id if session_id is not None else random.randint(1, 2**31)
    fmts = " ".join(str(pt) for pt in payload_types)
    lines = [
        "v=0",
        f"o=opencaller {sid} {sid} IN IP4 {ip}",
        "s=opencaller",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {fmts}",
        *(f"a=rtpmap:{pt} {CODECS[pt]}/8000" for pt in payload_types),
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass(frozen=True, slots=True)
class Answer:
    ip: str
    port: int
    payload_type: int  # the first payload type of ours the answer accepted


def parse_answer(body: bytes, offered: list[int]) -> Answer | None:
    session_ip: str | None = None
    media_ip: str | None = None
    port: int | None = None
    fmts: list[int] = []
    in_audio = False
    for raw in body.decode(errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("m="):
            in_audio = line.startswith("m=audio ") and port is None
            if in_audio:
                bits = line[2:].split()
                port = int(bits[1].split("/")[0])
                fmts = [int(f) for f in bits[3:] if f.isdigit()]
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
    return Answer(ip=ip, port=port, payload_type=chosen)
