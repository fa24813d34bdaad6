"""Per-second request limits and blocking of IPs that keep failing authentication.

These protect the API itself, so they are approximate by nature and kept in memory on one
node; with Redis configured they are shared by every node (storage/redis_counters.py).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol


class Counters(Protocol):
    async def hit_rate(self, key: str, limit: int, now: float) -> int | None:
        """Count one request in the current second; seconds to wait if over ``limit``."""
        ...

    async def auth_failed(self, ip: str, now: float) -> None: ...

    async def admit(
        self, ip: str, key: str, limit: int, now: float
    ) -> tuple[int | None, int | None]:
        """``blocked_for(ip)`` and ``hit_rate(key)`` in one step (one round trip in Redis)."""
        ...

    async def blocked_for(self, ip: str, now: float) -> int | None:
        """Seconds the IP stays blocked, or None."""
        ...


class MemoryCounters:
    def __init__(
        self, *, fail_limit: int = 20, fail_window_s: float = 300.0, block_s: float = 900.0
    ) -> None:
        self.fail_limit = fail_limit
        self.fail_window_s = fail_window_s
        self.block_s = block_s
        self._rate: dict[str, tuple[int, int]] = {}
        self._fails: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    async def hit_rate(self, key: str, limit: int, now: float) -> int | None:
        second = int(now)
        start, count = self._rate.get(key, (second, 0))
        if start != second:
            start, count = second, 0
            if len(self._rate) > 100_000:
                self._rate.clear()
        count += 1
        self._rate[key] = (start, count)
        return 1 if count > limit else None

    async def admit(
        self, ip: str, key: str, limit: int, now: float
    ) -> tuple[int | None, int | None]:
        return await self.blocked_for(ip, now), await self.hit_rate(key, limit, now)

    async def auth_failed(self, ip: str, now: float) -> None:
        q = self._fails.setdefault(ip, deque())
        q.append(now)
        while q and q[0] <= now - self.fail_window_s:
            q.popleft()
        if len(q) >= self.fail_limit:
            self._blocked[ip] = now + self.block_s
            q.clear()

    async def blocked_for(self, ip: str, now: float) -> int | None:
        until = self._blocked.get(ip)
        if until is None:
            return None
        if until <= now:
            del self._blocked[ip]
            return None
        return max(1, math.ceil(until - now))
