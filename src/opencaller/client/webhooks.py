"""Webhooks: the inboundCallWaiting callback, the status events (our extension), and
opencaller's signature on both. ``verify_event`` checks and parses any of them.

The signature (``sign``, ``verify``, the header names) lives in ``opencaller.webhook_signature``,
which the server's deliverer signs with too, so both ends cannot disagree on the format; it is
re-exported here as part of the client's API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..webhook_signature import (
    DEFAULT_TOLERANCE_S,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookSignatureError,
    sign,
    verify,
)
from .models import Text

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "InboundCall",
    "WebhookSignatureError",
    "parse_inbound_call",
    "sign",
    "verify",
    "verify_inbound_call",
]


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
