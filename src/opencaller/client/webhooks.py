"""The inboundCallWaiting webhook: its payload, and opencaller's signature on it.

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
