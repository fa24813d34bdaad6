"""Pure units: call-rate limiter, outcome mapping, digest, number formats, caller detection."""

from __future__ import annotations

import hashlib
import time

from sipmessage import Message, Request

from opencaller.telephony.base import Outcome
from opencaller.telephony.sip.auth import authorization, parse_challenge
from opencaller.telephony.sip.call import number_uri
from opencaller.telephony.sip.config import CallerIdPool, NumberFormat
from opencaller.telephony.sip.inbound import caller_of
from opencaller.telephony.sip.limits import CallRateLimiter
from opencaller.telephony.sip.outcomes import outcome_for, q850_cause
from opencaller.telephony.sip.pool import CallerIdChooser


async def test_rate_limiter_spreads_a_burst() -> None:
    limiter = CallRateLimiter(rate=20)
    t0 = time.monotonic()
    for _ in range(11):
        await limiter.acquire()
    assert time.monotonic() - t0 >= 0.45  # 10 waits of at least 50 ms


def test_outcome_mapping() -> None:
    assert outcome_for(486) is Outcome.BUSY
    assert outcome_for(404) is Outcome.NOT_FOUND
    assert outcome_for(480) is Outcome.UNAVAILABLE
    assert outcome_for(603) is Outcome.REJECTED
    assert outcome_for(503) is Outcome.NETWORK_ERROR
    assert outcome_for(500, q850=1) is Outcome.NOT_FOUND  # the cause is more specific
    assert q850_cause(["SIP;cause=200", 'Q.850;cause=17;text="busy"']) == 17


def test_digest_matches_rfc2617_formula() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n1", qop="auth,auth-int", opaque="o"')
    assert ch is not None and ch.qop == ["auth", "auth-int"]
    hdr = authorization(ch, method="INVITE", uri="sip:1@h", username="u", password="p", cnonce="c")
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:1@h").hexdigest()
    want = hashlib.md5(f"{ha1}:n1:00000001:c:auth:{ha2}".encode()).hexdigest()
    assert f'response="{want}"' in hdr
    assert "qop=auth," in hdr and "nc=00000001" in hdr and 'opaque="o"' in hdr


def test_number_formats() -> None:
    assert number_uri("79001234567", NumberFormat(), "d") == "sip:+79001234567@d"
    assert number_uri("79001234567", NumberFormat(plus=False, user_phone=True), "d") == (
        "sip:79001234567@d;user=phone"
    )
    assert number_uri("79001234567", NumberFormat(tel_uri=True), "d") == "tel:+79001234567"
    assert number_uri("7900", NumberFormat(tel_uri=True), "d", allow_tel=False) == "sip:+7900@d"


def _invite(extra: str) -> Request:
    raw = (
        "INVITE sip:74950000001@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK1\r\n"
        f"{extra}"
        "To: <sip:74950000001@127.0.0.1>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = Message.parse(raw.encode())
    assert isinstance(msg, Request)
    return msg


def test_caller_detection_prefers_pai_and_skips_anonymous() -> None:
    both = "From: <sip:111@h>;tag=a\r\nP-Asserted-Identity: <tel:+7-900-555-0001>\r\n"
    assert caller_of(_invite(both)) == "79005550001"
    assert caller_of(_invite("From: <sip:+79005550002@h>;tag=a\r\n")) == "79005550002"
    anon = 'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=a\r\n'
    assert caller_of(_invite(anon)) is None
    anon_pai = "From: <sip:+79005550003@h>;tag=a\r\nP-Asserted-Identity: <sip:anonymous@x>\r\n"
    assert caller_of(_invite(anon_pai)) == "79005550003"


def test_pool_ranges_cover_only_their_endings() -> None:
    chooser = CallerIdChooser(CallerIdPool(ranges=["79005554500-79005565499"]))
    assert chooser.why_not("4500") is None and chooser.pick("4500") in {
        "79005554500",
        "79005564500",
    }
    assert chooser.pick("5499") in {"79005555499", "79005565499"}
    assert chooser.pick("6000") == "79005556000"
    whole = CallerIdChooser(CallerIdPool(prefixes=["7900555"]))
    assert all(whole.pick(f"{i:04d}") == f"7900555{i:04d}" for i in range(0, 10000, 997))
