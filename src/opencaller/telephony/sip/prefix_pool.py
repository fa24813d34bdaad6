"""Ring rates per caller-ID prefix, and taking a prefix whose ring rate collapsed out of
the flash-call pool.

A terminating operator that starts blocking one of our number blocks answers its calls
with 403/404/603 (or drops them) while calls from our other blocks still ring. So for each
prefix (the caller ID without its last four digits, the code) we count the flash calls of
the last ``window_s`` (in ``BUCKETS`` slices, so the oldest may reach 1/60 further back):
when at least ``min_calls`` are in the window and the share that rang (delivered or
answered) is below ``min_ring_rate``, the prefix is blocked: the pool stops choosing it,
an error is logged and a metric raised. It comes back after
``cooldown_s`` with an empty window, or at once by ``restore``.

Memory is bounded: at most ``max_prefixes`` prefixes are tracked (the least recently used
goes first; a blocked one is kept until it comes back).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from opencaller.telephony.base import Outcome
from opencaller.telephony.sip.config import PrefixHealthConfig

log = logging.getLogger("opencaller.sip.prefixes")

CODE_DIGITS = 4
# Outcomes that say nothing about the caller ID: our trunk failed, or the call never went.
NEUTRAL = frozenset({Outcome.NETWORK_ERROR})


def prefix_of(caller_id: str) -> str:
    return caller_id[:-CODE_DIGITS] if len(caller_id) > CODE_DIGITS else caller_id


# The window is kept as this many buckets of counts, not one entry per call: at 500 calls
# a second a 10-minute window would otherwise hold 300,000 entries per prefix.
BUCKETS = 60


@dataclass(slots=True)
class _Bucket:
    start: float
    calls: int = 0
    rang: int = 0


@dataclass(slots=True)
class _Window:
    buckets: deque[_Bucket] = field(default_factory=deque)
    calls: int = 0
    rang: int = 0
    blocked_until: float | None = None

    def add(self, now: float, width: float, rang: bool) -> None:
        start = now - now % width
        if not self.buckets or self.buckets[-1].start != start:
            self.buckets.append(_Bucket(start))
        b = self.buckets[-1]
        b.calls, b.rang = b.calls + 1, b.rang + rang
        self.calls, self.rang = self.calls + 1, self.rang + rang

    def prune(self, now: float, window_s: float, width: float) -> None:
        """Drop the buckets wholly older than the window."""
        while self.buckets and self.buckets[0].start + width <= now - window_s:
            b = self.buckets.popleft()
            self.calls, self.rang = self.calls - b.calls, self.rang - b.rang

    def clear(self) -> None:
        self.buckets.clear()
        self.calls = self.rang = 0

    @property
    def rate(self) -> float | None:
        return self.rang / self.calls if self.calls else None


@dataclass(frozen=True, slots=True)
class PrefixStats:
    prefix: str
    calls: int  # in the window
    ring_rate: float | None
    blocked: bool


class PrefixHealth:
    def __init__(
        self,
        config: PrefixHealthConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[PrefixStats], None] | None = None,
        on_evict: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_change = on_change
        self.on_evict = on_evict  # a prefix is no longer tracked (drop its metric labels)
        self._keep = frozenset(config.keep)
        self._width = config.window_s / BUCKETS
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def record(self, caller_id: str, outcome: Outcome) -> None:
        """One finished flash call from ``caller_id``."""
        if not self.config.enabled or outcome in NEUTRAL:
            return
        prefix, now = prefix_of(caller_id), self.clock()
        w = self._window(prefix)
        w.add(now, self._width, outcome.reached)
        w.prune(now, self.config.window_s, self._width)
        if w.blocked_until is None and prefix not in self._keep and self._collapsed(w):
            w.blocked_until = now + self.config.cooldown_s
            log.error(
                "caller-ID prefix %s taken out of the pool: %d of its last %d flash calls"
                " rang (below %.0f %%); back in %.0f s",
                prefix, w.rang, w.calls, 100 * self.config.min_ring_rate,
                self.config.cooldown_s,
            )  # fmt: skip
        self._changed(prefix, w)

    def _collapsed(self, w: _Window) -> bool:
        rate = w.rate
        return (
            w.calls >= self.config.min_calls
            and rate is not None
            and rate < self.config.min_ring_rate
        )

    def _window(self, prefix: str) -> _Window:
        w = self._windows.get(prefix)
        if w is None:
            w = self._windows[prefix] = _Window()
            self._evict()
        self._windows.move_to_end(prefix)
        return w

    def _evict(self) -> None:
        while len(self._windows) > self.config.max_prefixes:
            victim = next((p for p, w in self._windows.items() if w.blocked_until is None), None)
            if victim is None:
                return
            del self._windows[victim]
            if self.on_evict is not None:
                self.on_evict(victim)

    def tracked(self, prefix: str) -> bool:
        return prefix in self._windows

    def blocked(self, prefix: str) -> bool:
        """Whether the pool must not use ``prefix`` now (a finished cool-down restores it)."""
        w = self._windows.get(prefix)
        if w is None or w.blocked_until is None:
            return False
        if self.clock() < w.blocked_until:
            return True
        self._restore(prefix, w, "its cool-down is over")
        return False

    def restore(self, prefix: str) -> bool:
        """Put ``prefix`` back into the pool now (the operator's decision). True if it was out."""
        w = self._windows.get(prefix)
        if w is None or w.blocked_until is None:
            return False
        self._restore(prefix, w, "restored by the operator")
        return True

    def _restore(self, prefix: str, w: _Window, why: str) -> None:
        # A fresh window: the calls that blocked it must not block it again at once.
        w.clear()
        w.blocked_until = None
        log.warning("caller-ID prefix %s is back in the pool: %s", prefix, why)
        self._changed(prefix, w)

    def _changed(self, prefix: str, w: _Window) -> None:
        if self.on_change is not None:
            self.on_change(self.stats_of(prefix, w))

    def stats_of(self, prefix: str, w: _Window) -> PrefixStats:
        return PrefixStats(prefix, w.calls, w.rate, w.blocked_until is not None)

    def ring_rates(self) -> dict[str, PrefixStats]:
        """Every tracked prefix's window (a read API, e.g. for routing by conversion)."""
        now = self.clock()
        out = {}
        for prefix, w in list(self._windows.items()):
            w.prune(now, self.config.window_s, self._width)
            blocked = self.blocked(prefix)
            out[prefix] = PrefixStats(prefix, w.calls, w.rate, blocked)
        return out
