"""opencaller's signature on the webhooks it sends: one format for the server that signs and
the client SDK that checks (``opencaller.client.webhooks`` re-exports all of it).

uCaller documents no signature (spec §6.8); opencaller adds one so receivers need not rely on
a secret URL. The header is

    X-Opencaller-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

keyed with the service's secret key over ``b"<t>." + raw body``. Binding ``t`` into the MAC
and refusing old ``t`` values stops replays of a captured request. Several ``v1`` entries
may be present (e.g. while a key is being rotated); one match is enough.

This module imports nothing from opencaller: it sits at the bottom of the layers, beside the
SDK and the server alike.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Opencaller-Signature"
EVENT_HEADER = "X-Opencaller-Event"
DEFAULT_TOLERANCE_S = 300.0


class WebhookSignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _mac(secret: str | bytes, body: bytes, t: int) -> str:
    return hmac.new(_key(secret), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, t: int | None = None) -> str:
    """The header value for ``body`` sent at ``t`` (now when omitted)."""
    ts = int(time.time()) if t is None else int(t)
    return f"t={ts},v1={_mac(secret, body, ts)}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    t: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                t = int(value)
            except ValueError as exc:
                raise WebhookSignatureError("signature timestamp is not an integer") from exc
        elif name == "v1":
            macs.append(value.strip().lower())
    if t is None or not macs:
        raise WebhookSignatureError("signature header needs t= and v1=")
    return t, macs


def verify(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check ``header`` against the raw ``body``; returns the signed timestamp.

    Raises ``WebhookSignatureError`` when anything is off. Pass the body bytes exactly as
    received: a re-serialised JSON object will not match.
    """
    if not header:
        raise WebhookSignatureError(f"no {SIGNATURE_HEADER} header")
    t, macs = _parse_header(header)
    current = time.time() if now is None else now
    # Both directions: a timestamp from the future is as suspicious as an old one.
    if abs(current - t) > tolerance:
        raise WebhookSignatureError("signature timestamp outside the tolerance window")
    expected = _mac(secret, body, t)
    # compare_digest on every candidate: the time taken says nothing about the match.
    matched = False
    for mac in macs:
        matched |= hmac.compare_digest(expected, mac)
    if not matched:
        raise WebhookSignatureError("signature does not match")
    return t
