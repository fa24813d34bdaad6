"""Webhook signatures.

Header ``X-Opencaller-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256 keyed with the service's secret key over ``"<t>." + raw body``. The timestamp
is signed too, so a captured request cannot be replayed after the tolerance window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Opencaller-Signature"
EVENT_HEADER = "X-Opencaller-Event"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _mac(secret: str | bytes, body: bytes, t: int) -> str:
    return hmac.new(_key(secret), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, t: int | None = None) -> str:
    """The signature header value for ``body`` sent at ``t`` (default: now)."""
    t = int(time.time()) if t is None else int(t)
    return f"t={t},v1={_mac(secret, body, t)}"


def verify(
    secret: str | bytes,
    body: bytes,
    header: str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid signature of ``body`` made within ``tolerance_s``.

    Several ``v1=`` values are accepted (any one may match), so keys can be rotated.
    """
    t: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        k, _, v = part.strip().partition("=")
        if k == "t" and v.isdigit():
            t = int(v)
        elif k == "v1" and v:
            sigs.append(v.lower())
    if t is None or not sigs:
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    expected = _mac(secret, body, t)
    return any(hmac.compare_digest(expected, s) for s in sigs)
