"""Signal keys: what one initCall is counted under, per service and installation-wide.

A key names a scope (``s<service id>`` or ``all``), a signal and its value. Counts of calls
and of codes entered are kept per key and window (counters.py); the rules (decisions.py)
compare them. Installation-wide keys are counted only for services that report codes (a
service that never calls verifyCode would look like fraud everywhere it calls)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# (signal, needs conversion data): the signals a call is counted under, most specific first.
DESTINATION_SIGNALS = ("run", "prefix8", "prefix7", "operator", "country")
SERVICE = "service"  # the whole service: whether it reports codes at all
_UNSAFE = re.compile(r"[^\w.:-]+")  # operator names are often Cyrillic: letters stay


@dataclass(frozen=True, slots=True)
class Attempt:
    """One initCall as the guard sees it."""

    service_id: int
    account_id: int
    phone: str
    country: str
    operator: str
    origin: str  # client address (X-Forwarded-For from trusted proxies), "" when unknown
    client: str | None  # the request's `client` value


def clean(value: str, limit: int = 48) -> str:
    """A key part: no spaces (keys are stored space-separated), bounded in length."""
    return _UNSAFE.sub("_", value)[:limit]


def values(attempt: Attempt) -> dict[str, str]:
    """Signal -> value for ``attempt``; signals without a value are left out."""
    phone = attempt.phone
    found = {
        "run": phone[:-2],  # one hundred consecutive numbers
        "prefix8": phone[:8],
        "prefix7": phone[:7],
        "operator": clean(attempt.operator),
        "country": attempt.country,
    }
    if attempt.origin:
        found["origin"] = clean(attempt.origin, 64)
    return {k: v for k, v in found.items() if v}


def key(scope: str, signal: str, value: str) -> str:
    return f"{scope}:{signal}:{value}"


def service_scope(service_id: int) -> str:
    return f"s{service_id}"


def keys_of(attempt: Attempt, *, installation: bool) -> dict[str, str]:
    """Key -> signal of every counter ``attempt`` is counted under."""
    scope = service_scope(attempt.service_id)
    found = {key(scope, signal, v): signal for signal, v in values(attempt).items()}
    if attempt.client:
        found[key(scope, "client", clean(attempt.client, 64))] = "client"
    found[key(scope, SERVICE, "all")] = SERVICE
    if installation:
        found.update({key("all", s, v): s for s, v in values(attempt).items()})
    return found


def channel_key(service_id: int, operator: str, channel: str) -> str:
    """Calls and codes of one channel to one operator, for routing (routing.py)."""
    return key(service_scope(service_id), "channel", f"{clean(operator)}:{channel}")
