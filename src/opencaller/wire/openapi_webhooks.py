"""The webhooks opencaller sends, for the OpenAPI document's ``webhooks`` section (3.1): the
inboundCallWaiting callback and the status events (our extension). The payloads are the ones
webhooks/outbox.py and webhooks/status.py build; tests check real deliveries against them."""

from __future__ import annotations

from typing import Any

from ..telephony.base import Outcome

Schema = dict[str, Any]

SIGNATURE_TEXT = (
    "Signed with the service's secret key: `X-Opencaller-Signature: t=<unix>,v1=<hex>`, where"
    " `v1` is HMAC-SHA256 over `<t>.` followed by the raw body. Refuse a request whose `t` is"
    " more than 5 minutes away from your clock. `opencaller.client.verify_event` checks and"
    " parses every kind."
)

_HEADERS: list[Schema] = [
    {
        "name": "X-Opencaller-Signature",
        "in": "header",
        "required": True,
        "description": SIGNATURE_TEXT,
        "schema": {"type": "string", "pattern": "^t=[0-9]+(,v1=[0-9a-f]{64})+$"},
    },
    {
        "name": "X-Opencaller-Event",
        "in": "header",
        "required": True,
        "description": "The kind: `inbound_call`, or the status event's `event`.",
        "schema": {"type": "string"},
    },
]


def _closed(props: dict[str, Schema], description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
        "x-opencaller-extension": True,
    }


def _status(kind: str, description: str, **extra: Schema) -> Schema:
    props: dict[str, Schema] = {
        "event_id": {
            "type": "string",
            "description": "The same on every attempt to deliver this event: skip ids you have"
            " handled (delivery is at least once).",
        },
        "event": {"const": kind, "description": "The kind of change."},
        "ucaller_id": {"type": "integer", "description": "The authorization."},
        "service_id": {"type": "integer", "description": "Its service."},
        "timestamp": {"type": "integer", "description": "When it happened, Unix seconds."},
        **extra,
    }
    return _closed(props, description)


SCHEMAS: dict[str, Schema] = {
    "StatusDialing": _status("dialing", "A dispatcher started the call."),
    "StatusFinished": _status(
        "finished",
        "The call's outcome is known (as getInfo reports it).",
        call_status={"type": "integer", "enum": [0, 1], "description": "1: reached."},
        call_outcome={
            "type": "string",
            "enum": [o.value for o in Outcome],
            "description": "getInfo's `call_outcome`.",
        },
        sip_code={
            "type": ["integer", "null"],
            "description": "The SIP status that ended the call, if there was one.",
        },
    ),
    "StatusVerified": _status(
        "verified",
        "verifyCode took the right code, or the subscriber's inbound call arrived.",
        verified_at={"type": "integer", "description": "As getInfo's `verified_at`."},
    ),
    "InboundCallWebhook": {
        "type": "object",
        "description": "POSTed to the `callback_url` of inboundCallWaiting when the subscriber"
        " calls (uCaller's fields; the signature is ours).",
        "properties": {
            "callId": {"type": "string", "description": "The ucaller_id, as text."},
            "callbackLink": {"type": "string"},
            "clientNumber": {"type": "string", "description": "The subscriber's number."},
            "confirmationNumber": {"type": "string", "description": "The number called."},
            "isMnp": {"type": "boolean"},
            "operatorName": {"type": ["string", "null"]},
            "operatorNameMnp": {"type": ["string", "null"]},
            "regionName": {"type": "string"},
        },
        "required": [
            "callId",
            "callbackLink",
            "clientNumber",
            "confirmationNumber",
            "isMnp",
            "operatorName",
            "operatorNameMnp",
            "regionName",
        ],
        "additionalProperties": False,
    },
}

STATUS_EVENT: Schema = {
    "oneOf": [
        {"$ref": "#/components/schemas/StatusDialing"},
        {"$ref": "#/components/schemas/StatusFinished"},
        {"$ref": "#/components/schemas/StatusVerified"},
    ],
    "discriminator": {
        "propertyName": "event",
        "mapping": {
            "dialing": "#/components/schemas/StatusDialing",
            "finished": "#/components/schemas/StatusFinished",
            "verified": "#/components/schemas/StatusVerified",
        },
    },
}

_RECEIVED = {
    "2XX": {"description": "Received. Any other answer (or none in 10 s) is retried with backoff."}
}


def webhooks() -> Schema:
    """The ``webhooks`` section: one entry per URL a customer gives us."""
    return {
        "statusEvent": {
            "post": {
                "operationId": "statusEvent",
                "tags": ["Webhooks"],
                "summary": "A change of an authorization, to the service's status_url",
                "description": "Our extension. Events of one authorization arrive in the order"
                " they happened: dialing, finished, and verified whenever the code was right"
                " (or the inbound call came). None are sent to services without a status_url.",
                "parameters": _HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": STATUS_EVENT}},
                },
                "responses": _RECEIVED,
                "x-opencaller-extension": True,
            }
        },
        "inboundCall": {
            "post": {
                "operationId": "inboundCallWebhook",
                "tags": ["Webhooks"],
                "summary": "The subscriber called, to inboundCallWaiting's callback_url",
                "parameters": _HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/InboundCallWebhook"}
                        }
                    },
                },
                "responses": _RECEIVED,
            }
        },
    }
