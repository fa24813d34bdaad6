"""Signing and verifying the inboundCallWaiting webhook (X-Opencaller-Signature)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from opencaller.client.webhooks import (
    WebhookSignatureError,
    sign,
    verify,
    verify_inbound_call,
)

SECRET = "s3cr3t-key-of-the-service-000001"
BODY = json.dumps(
    {
        "callId": "10300",
        "clientNumber": "79001000010",
        "confirmationNumber": "79001000011",
        "isMnp": False,
        "operatorName": "МТС",
        "operatorNameMnp": None,
        "regionName": "Москва",
    },
    ensure_ascii=False,
).encode()
T = 1_800_000_000


def test_signature_format_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, T) == f"t={T},v1={expected}"


def test_good_signature_is_accepted_and_parsed() -> None:
    header = sign(SECRET, BODY, T)
    assert verify(SECRET, BODY, header, now=T + 299) == T
    call = verify_inbound_call(SECRET, BODY, header, now=T)
    assert call.client_number == "79001000010"
    assert call.operator_name_mnp is None


def test_tampered_body_is_rejected() -> None:
    header = sign(SECRET, BODY, T)
    tampered = BODY.replace(b"79001000010", b"79001000099")
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(SECRET, tampered, header, now=T)


def test_wrong_secret_is_rejected() -> None:
    header = sign("another-services-secret-key-0002", BODY, T)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(SECRET, BODY, header, now=T)


@pytest.mark.parametrize("now", [T + 301, T - 301])
def test_timestamp_outside_the_window_is_rejected(now: int) -> None:
    header = sign(SECRET, BODY, T)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify(SECRET, BODY, header, now=now)


def test_the_window_is_configurable() -> None:
    header = sign(SECRET, BODY, T)
    assert verify(SECRET, BODY, header, now=T + 3600, tolerance=7200) == T


def test_a_replayed_signature_with_a_new_timestamp_is_rejected() -> None:
    old_mac = sign(SECRET, BODY, T).split("v1=")[1]
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(SECRET, BODY, f"t={T + 1000},v1={old_mac}", now=T + 1000)


def test_one_matching_signature_of_several_is_enough() -> None:
    good = sign(SECRET, BODY, T).split("v1=")[1]
    header = f"t={T},v1={'0' * 64},v1={good}"
    assert verify(SECRET, BODY, header, now=T) == T


@pytest.mark.parametrize("header", [None, "", "v1=abcd", f"t={T}", "t=yesterday,v1=ab"])
def test_missing_or_malformed_headers_are_rejected(header: str | None) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(SECRET, BODY, header, now=T)


# -- one helper for every webhook: verify_event ------------------------------------------------


def test_verify_event_parses_every_kind() -> None:
    from opencaller.client.webhooks import InboundCall, StatusEvent, verify_event

    inbound = verify_event(SECRET, BODY, sign(SECRET, BODY, T), now=T)
    assert isinstance(inbound, InboundCall) and inbound.call_id == "10300"
    finished = json.dumps(
        {
            "event_id": "e-1",
            "event": "finished",
            "ucaller_id": 42,
            "service_id": 7,
            "timestamp": T,
            "call_status": 0,
            "call_outcome": "busy",
            "sip_code": 486,
        }
    ).encode()
    event = verify_event(SECRET, finished, sign(SECRET, finished, T), event="finished", now=T)
    assert isinstance(event, StatusEvent)
    assert (event.event_id, event.ucaller_id, event.call_outcome, event.sip_code) == (
        "e-1",
        42,
        "busy",
        486,
    )
    # A kind this client does not know yet still parses: receivers can skip it.
    future = json.dumps(
        {"event_id": "e-2", "event": "refunded", "ucaller_id": 42, "service_id": 7, "timestamp": T}
    ).encode()
    later = verify_event(SECRET, future, sign(SECRET, future, T), now=T)
    assert isinstance(later, StatusEvent) and later.event == "refunded"


def test_verify_event_refuses_a_status_event_that_was_altered() -> None:
    from opencaller.client.webhooks import verify_event

    body = b'{"event_id":"e-1","event":"verified","ucaller_id":1,"service_id":1,"timestamp":1}'
    header = sign(SECRET, body, T)
    with pytest.raises(WebhookSignatureError):
        verify_event(SECRET, body.replace(b'"ucaller_id":1', b'"ucaller_id":2'), header, now=T)
