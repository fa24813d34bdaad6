"""SIP status codes and Q.850 causes (RFC 3326 ``Reason``) mapped to outcomes."""

from __future__ import annotations

import re

from opencaller.telephony.base import Outcome

_BY_CODE: dict[int, Outcome] = {
    486: Outcome.BUSY,
    600: Outcome.BUSY,
    404: Outcome.NOT_FOUND,
    484: Outcome.NOT_FOUND,
    410: Outcome.NOT_FOUND,
    604: Outcome.NOT_FOUND,
    480: Outcome.UNAVAILABLE,
    408: Outcome.UNAVAILABLE,
    403: Outcome.REJECTED,
    603: Outcome.REJECTED,
}

# ISUP causes (RFC 3398) that say more than the SIP code a gateway chose.
_BY_Q850: dict[int, Outcome] = {
    1: Outcome.NOT_FOUND,  # unallocated number
    3: Outcome.NOT_FOUND,  # no route to destination
    22: Outcome.NOT_FOUND,  # number changed
    28: Outcome.NOT_FOUND,  # invalid number format
    17: Outcome.BUSY,  # user busy
    18: Outcome.UNAVAILABLE,  # no user responding
    19: Outcome.UNAVAILABLE,  # no answer from user (alerted)
    20: Outcome.UNAVAILABLE,  # subscriber absent
    21: Outcome.REJECTED,  # call rejected
    27: Outcome.NETWORK_ERROR,  # destination out of order
    34: Outcome.NETWORK_ERROR,  # no circuit available
    38: Outcome.NETWORK_ERROR,  # network out of order
    41: Outcome.NETWORK_ERROR,  # temporary failure
    42: Outcome.NETWORK_ERROR,  # switching equipment congestion
}

_Q850 = re.compile(r"Q\.850\s*;(?:[^,]*;)?\s*cause\s*=\s*(\d+)", re.IGNORECASE)


def q850_cause(reason_headers: list[str]) -> int | None:
    for value in reason_headers:
        m = _Q850.search(value)
        if m:
            return int(m.group(1))
    return None


def outcome_for(code: int, q850: int | None = None) -> Outcome:
    """Outcome of a final failure response. The Q.850 cause wins when it is specific."""
    if q850 is not None and q850 in _BY_Q850 and code != 487:
        return _BY_Q850[q850]
    if code in _BY_CODE:
        return _BY_CODE[code]
    if 500 <= code < 600:
        return Outcome.NETWORK_ERROR
    return Outcome.REJECTED


def is_trunk_failure(code: int | None) -> bool:
    """A response that says the trunk, not the subscriber, failed: try the next trunk."""
    return code is None or 500 <= code < 600
