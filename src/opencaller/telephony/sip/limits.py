"""Per-trunk pacing: a token bucket at the operator's CPS and a cap on calls in flight."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. ``acquire`` waits its turn.

    Waiters are served in order: each takes the next slot on the timeline, so a burst of
    callers is spread evenly instead of waking together.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else min(rate, max(1.0, rate / 10)))
        self._tokens = self.burst
        self._last = time.monotonic()

    def reserve(self) -> float:
        """Take a token now and return how long to wait before using it."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class TrunkLimits:
    def __init__(self, cps: float, max_in_flight: int) -> None:
        self.bucket = TokenBucket(cps)
        self.in_flight = asyncio.Semaphore(max_in_flight)
