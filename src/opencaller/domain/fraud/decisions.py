"""The rules: from counts to allow or refuse, with a reason a person can read.

A key is suspect when it has at least its minimum of calls in the window and fewer codes
entered than the minimum conversion. For a service that has not reported a single code in
the window (it checks codes itself, without verifyCode) there is no conversion to measure:
only the destination rules (runs and prefixes) apply, with ``blind_factor`` times the calls."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .counters import Counts
from .signals import SERVICE

BROAD = frozenset({"operator", "country"})  # whole operators and countries
# Without conversion data only clustered destinations mean anything: a service's backend is
# often its only client address, and its volume alone says nothing.
BLIND = frozenset({"run", "prefix8", "prefix7"})


@dataclass(frozen=True, slots=True)
class Thresholds:
    min_conversion: float = 0.1
    minimum: Mapping[str, int] = field(
        default_factory=lambda: {
            "run": 8,
            "prefix8": 15,
            "prefix7": 25,
            "origin": 20,
            "client": 20,
            "operator": 300,
            "country": 300,
        }
    )
    broad_min_conversion: float = 0.02
    blind_factor: float = 4.0


@dataclass(frozen=True, slots=True)
class Suspect:
    key: str
    signal: str
    calls: int
    codes: int


def reports_codes(keys: Mapping[str, str], counts: Counts) -> bool:
    """Whether the service had a code entered in the window (so conversion means something)."""
    return any(counts.get(k, (0, 0))[1] > 0 for k, s in keys.items() if s == SERVICE)


def suspects(keys: Mapping[str, str], counts: Counts, th: Thresholds) -> Iterator[Suspect]:
    """The suspect keys among ``keys``, most specific signal first."""
    reporting = reports_codes(keys, counts)
    factor = 1.0 if reporting else th.blind_factor
    for key, signal in keys.items():
        if signal == SERVICE or not (reporting or signal in BLIND):
            continue
        calls, codes = counts.get(key, (0, 0))
        conversion = th.broad_min_conversion if signal in BROAD else th.min_conversion
        if calls >= th.minimum[signal] * factor and codes < conversion * calls:
            yield Suspect(key, signal, calls, codes)


_WHAT = {
    "run": "the hundred numbers {v}00-{v}99",
    "prefix8": "numbers starting {v}",
    "prefix7": "numbers starting {v}",
    "origin": "client address {v}",
    "client": "client {v}",
    "operator": "operator {v}",
    "country": "country {v}",
}


def reason(s: Suspect) -> str:
    scope, signal, value = s.key.split(":", 2)
    where = "installation-wide" if scope == "all" else "this service"
    what = _WHAT[signal].format(v=value)
    return f"{s.calls} calls to {what} with {s.codes} codes entered ({where})"


def retry_after(bucket: int, window_s: float, now: float) -> int:
    """Seconds until the counts that tripped the rule have left the window."""
    return max(1, math.ceil((bucket + 2) * window_s - now))
