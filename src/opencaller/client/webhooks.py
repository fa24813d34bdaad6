"""Webhooks: the inboundCallWaiting callback, the status events (our extension), and
opencaller's signature on both. ``verify_event`` checks and parses any of them.

uCaller documents no signature (spec §6.8); opencaller adds one so receivers need not rely on
a secret URL. The header is

    X-Opencaller-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

keyed with the service's secret key over ``b"<t>." + raw body``. Binding ``t`` into the MAC
and refusing old ``t`` values stops replays of a captured request. Several ``v1`` entries
may be present (e.g. while a key is being rotated); one match is enough. The server signs
with ``sign`` from this module, so both ends cannot disagree on the format.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .models import Text

SIGNATURE_HEADER = "X-Opencaller-Signature"
EVENT_HEADER = "X-Opencaller-Event"
DEFAULT_TOLERANCE_S = 300.0


class WebhookSignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


# Status events (POSTed to a service's status_url), by their ``event`` field.
DIALING = "dialing"
FINISHED = "finished"
VERIFIED = "verified"
INBOUND_CALL = "inbound_call"  # the X-Opencaller-Event of the inboundCallWaiting callback


class StatusEvent(BaseModel):
    """A change of an authorization. ``event_id`` is the same on every delivery attempt of
    one event: keep the ids you handled and skip repeats (delivery is at least once). Events
    of one authorization arrive in the order they happened."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    event: str  # dialing | finished | verified (more kinds may come: ignore unknown ones)
    ucaller_id: int
    service_id: int
    timestamp: int  # when it happened, Unix seconds
    # finished: as getInfo reports them
    call_status: int | None = None
    call_outcome: str | None = None
    sip_code: int | None = None
    # verified
    verified_at: int | None = None


class InboundCall(BaseModel):
    """The body uCaller (and opencaller) POSTs to ``callback_url`` when the user calls in."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    call_id: Text = Field(alias="callId")
    callback_link: str | None = Field(default=None, alias="callbackLink")
    client_number: Text = Field(alias="clientNumber")
    confirmation_number: Text = Field(alias="confirmationNumber")
    is_mnp: bool = Field(default=False, alias="isMnp")
    operator_name: str | None = Field(default=None, alias="operatorName")
    operator_name_mnp: str | None = Field(default=None, alias="operatorNameMnp")
    region_name: str | None = Field(default=None, alias="regionName")


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


def parse_inbound_call(body: bytes | str | Mapping[str, Any]) -> InboundCall:
    """The webhook payload as a model; raises ``pydantic.ValidationError`` or ``ValueError``."""
    data = body if isinstance(body, Mapping) else json.loads(body)
    return InboundCall.model_validate(data)


def verify_inbound_call(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> InboundCall:
    """``verify`` then ``parse_inbound_call``: what a webhook handler usually wants."""
    verify(secret, body, header, tolerance=tolerance, now=now)
    return parse_inbound_call(body)


Event = InboundCall | StatusEvent


def parse_event(body: bytes | str | Mapping[str, Any], event: str | None = None) -> Event:
    """Any webhook's payload as its model: a ``StatusEvent`` or an ``InboundCall``. ``event``
    is the ``X-Opencaller-Event`` header if you have it; without it the body decides."""
    data = body if isinstance(body, Mapping) else json.loads(body)
    if event == INBOUND_CALL or (event is None and "event" not in data):
        return InboundCall.model_validate(data)
    return StatusEvent.model_validate(data)


def verify_event(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    event: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Event:
    """``verify`` then ``parse_event``: one call for every webhook opencaller sends."""
    verify(secret, body, header, tolerance=tolerance, now=now)
    return parse_event(body, event)
