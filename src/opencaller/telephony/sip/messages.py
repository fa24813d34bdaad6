"""Building SIP requests and responses with sipmessage, and reading a few header fields."""

from __future__ import annotations

import os
import re

from sipmessage import URI, Request, Response

_BRANCH = re.compile(r"branch=([^;,\s]+)", re.IGNORECASE)
_TAG = re.compile(r";\s*tag=([^;,\s>]+)", re.IGNORECASE)

REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    405: "Method Not Allowed",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    501: "Not Implemented",
    603: "Decline",
}

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"


def new_branch() -> str:
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


def new_call_id(host: str) -> str:
    return f"{os.urandom(12).hex()}@{host}"


def top_branch(msg: Request | Response) -> str | None:
    via = msg.headers.get("Via")
    if via is None:
        return None
    m = _BRANCH.search(via)
    return m.group(1) if m else None


_RECEIVED = re.compile(r";\s*received=([^;,\s]+)", re.IGNORECASE)
_RPORT = re.compile(r";\s*rport=(\d+)", re.IGNORECASE)


def via_received(msg: Response) -> tuple[str | None, int | None]:
    """The ``received`` and ``rport`` parameters (RFC 3581) the next hop put in our Via of a
    response: where it saw our request come from (our address outside a NAT)."""
    via = msg.headers.get("Via") or ""
    host, port = _RECEIVED.search(via), _RPORT.search(via)
    return (host.group(1) if host else None), (int(port.group(1)) if port else None)


def cseq_of(msg: Request | Response) -> tuple[int, str]:
    num, method = msg.headers["CSeq"].split()
    return int(num), method.upper()


def tag_of(header_value: str | None) -> str | None:
    if not header_value:
        return None
    # The tag is a header parameter: look after the closing '>' when there is one.
    tail = header_value[header_value.rfind(">") + 1 :] if ">" in header_value else header_value
    m = _TAG.search(tail)
    return m.group(1) if m else None


def request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    user_agent: str | None = None,
) -> Request:
    req = Request(method, URI.parse(uri), body=body)
    h = req.headers
    h.add("Via", via)
    h.add("Max-Forwards", "70")
    h.add("From", from_)
    h.add("To", to)
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {method}")
    for k, v in headers or ():
        h.add(k, v)
    if user_agent:
        h.add("User-Agent", user_agent)
    if content_type:
        h.add("Content-Type", content_type)
    h.add("Content-Length", str(len(body)))
    return req


def response(
    req: Request,
    code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    resp = Response(code, reason or REASONS.get(code, "Unknown"), body=body)
    h = resp.headers
    h.setlist("Via", list(req.headers.getlist("Via")))
    h.add("From", req.headers["From"])
    to = req.headers["To"]
    if to_tag and tag_of(to) is None:
        to = f"{to};tag={to_tag}"
    h.add("To", to)
    h.add("Call-ID", req.headers["Call-ID"])
    h.add("CSeq", req.headers["CSeq"])
    for k, v in headers or ():
        h.add(k, v)
    if content_type:
        h.add("Content-Type", content_type)
    h.add("Content-Length", str(len(body)))
    return resp
