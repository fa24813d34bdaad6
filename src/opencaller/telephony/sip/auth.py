"""HTTP digest (RFC 2617 / RFC 3261 §22) for 401 and 407 challenges, MD5 with qop=auth.

The header is built by hand: credentials must not quote ``qop``, ``nc`` or ``algorithm``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]+)\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    opaque: str | None
    algorithm: str
    qop: list[str]
    stale: bool


def parse_challenge(value: str) -> Challenge | None:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    for m in _PARAM.finditer(rest):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[m.group(1).lower()] = v
    if "nonce" not in params:
        return None
    return Challenge(
        realm=params.get("realm", ""),
        nonce=params["nonce"],
        opaque=params.get("opaque"),
        algorithm=params.get("algorithm", "MD5"),
        qop=[q.strip() for q in params.get("qop", "").split(",") if q.strip()],
        stale=params.get("stale", "").lower() == "true",
    )


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    ch: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The value of an Authorization / Proxy-Authorization header answering ``ch``."""
    if ch.algorithm.upper() != "MD5":
        raise ValueError(f"unsupported digest algorithm {ch.algorithm}")
    ha1 = _md5(f"{username}:{ch.realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    parts = [
        f"username={_q(username)}",
        f"realm={_q(ch.realm)}",
        f"nonce={_q(ch.nonce)}",
        f"uri={_q(uri)}",
    ]
    if "auth" in ch.qop:
        cnonce = cnonce or os.urandom(8).hex()
        ncv = f"{nc:08x}"
        response = _md5(f"{ha1}:{ch.nonce}:{ncv}:{cnonce}:auth:{ha2}")
        parts += [f"response={_q(response)}", "algorithm=MD5", f"cnonce={_q(cnonce)}"]
        parts += ["qop=auth", f"nc={ncv}"]
    else:
        parts += [f"response={_q(_md5(f'{ha1}:{ch.nonce}:{ha2}'))}", "algorithm=MD5"]
    if ch.opaque is not None:
        parts.append(f"opaque={_q(ch.opaque)}")
    return "Digest " + ", ".join(parts)
