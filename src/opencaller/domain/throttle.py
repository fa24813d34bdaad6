"""Per-second request limits and blocking of IPs that keep failing authentication.

These protect the API itself, so they are approximate by nature and kept in memory on one
node; with Redis configured they are shared by every node (storage/redis_counters.py).

In memory every map is keyed by client input (the caller's IP) or grows with traffic, so each
has a fixed number of entries and forgets the least recently used one first: under a flood of
distinct addresses the newest offenders stay counted and blocked, the oldest may be forgotten.
"""

from __future__ import annotations

import math
from typing import Protocol

from cachetools import LRUCache

# Entries kept per map (LRU). A failure history is a short list of times (a list, not a
# deque: an empty deque alone takes 600 bytes); a block is one float. Full maps hold about
# 20 MB of failure histories and 20 MB of blocks (IPv4 keys).
MAX_FAILING_IPS = 50_000
MAX_BLOCKED_IPS = 100_000
MAX_RATE_KEYS = 20_000


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
        self,
        *,
        fail_limit: int = 20,
        fail_window_s: float = 300.0,
        block_s: float = 900.0,
        max_failing: int = MAX_FAILING_IPS,
        max_blocked: int = MAX_BLOCKED_IPS,
        max_rate_keys: int = MAX_RATE_KEYS,
    ) -> None:
        self.fail_limit = fail_limit
        self.fail_window_s = fail_window_s
        self.block_s = block_s
        self._rate: LRUCache[str, tuple[int, int]] = LRUCache(maxsize=max_rate_keys)
        self._fails: LRUCache[str, list[float]] = LRUCache(maxsize=max_failing)
        self._blocked: LRUCache[str, float] = LRUCache(maxsize=max_blocked)

    async def hit_rate(self, key: str, limit: int, now: float) -> int | None:
        second = int(now)
        start, count = self._rate.get(key, (second, 0))
        if start != second:
            start, count = second, 0
        count += 1
        self._rate[key] = (start, count)
        return 1 if count > limit else None

    async def admit(
        self, ip: str, key: str, limit: int, now: float
    ) -> tuple[int | None, int | None]:
        return await self.blocked_for(ip, now), await self.hit_rate(key, limit, now)

    async def auth_failed(self, ip: str, now: float) -> None:
        q = self._fails.get(ip)
        if q is None:
            q = self._fails[ip] = []
        q.append(now)
        # At most fail_limit entries: dropping the expired head is cheap.
        while q and q[0] <= now - self.fail_window_s:
            del q[0]
        if len(q) >= self.fail_limit:
            self._blocked[ip] = now + self.block_s
            del self._fails[ip]

    async def blocked_for(self, ip: str, now: float) -> int | None:
        until = self._blocked.get(ip)
        if until is None:
            return None
        if until <= now:
            del self._blocked[ip]
            return None
        return max(1, math.ceil(until - now))
