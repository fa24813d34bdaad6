"""Per-trunk pacing: a call-rate limiter at the operator's CPS and a cap on calls in flight.

Carriers police CPS per second, on their own clock, and count every INVITE. A token bucket
lets a saved-up burst through on top of the rate, so it can exceed the limit in a 1-second
window; this limiter cannot: at most ``floor(cps)`` calls start in any window of one second
(plus a small guard, so that jitter on the way to the carrier cannot squeeze two of our
windows into one of theirs), and starts are spaced evenly across the window.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

# Our window is this much longer than the carrier's second: a call that leaves a few
# milliseconds late must not land in the same carrier second as the call `cps` places later.
GUARD_S = 0.05


class CallRateLimiter:
    """At most ``limit`` grants in any window of ``window_s`` seconds, by ``clock``.

    ``limit = floor(rate)`` (at least 1) and ``window_s = max(1, 1 / rate) + guard_s``, so a
    rate of 2.5 allows 2 calls a second and 0.5 one call every 2 s. Grants are spaced by
    ``window_s / limit``, and the window is checked on top (the hard guarantee) against the
    time each grant was actually taken, after waking, not the time it was planned for.
    Waiters are served first come, first served; one cancelled while waiting takes nothing.
    """

    def __init__(
        self,
        rate: float,
        *,
        guard_s: float = GUARD_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or not math.isfinite(rate):
            raise ValueError("rate must be a positive number")
        self.rate = rate
        self.limit = max(1, math.floor(rate))
        self.window_s = max(1.0, 1.0 / rate) + guard_s
        self.spacing_s = self.window_s / self.limit
        self._clock, self._sleep = clock, sleep
        self._grants: deque[float] = deque(maxlen=self.limit)
        self._lock = asyncio.Lock()

    def wait_s(self, now: float) -> float:
        """How long a grant asked for at ``now`` has to wait (0: it may go now)."""
        if not self._grants:
            return 0.0
        wait = self._grants[-1] + self.spacing_s - now
        if len(self._grants) == self.limit:
            wait = max(wait, self._grants[0] + self.window_s - now)
        return max(0.0, wait)

    def try_acquire(self) -> bool:
        """Take a grant now if one is free (no waiting)."""
        now = self._clock()
        if self._lock.locked() or self.wait_s(now) > 0:
            return False
        self._grants.append(now)
        return True

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                wait = self.wait_s(now)
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._grants.append(now)


class TrunkLimits:
    def __init__(self, cps: float, max_in_flight: int) -> None:
        self.rate = CallRateLimiter(cps)
        self.in_flight = asyncio.Semaphore(max_in_flight)
