"""Per-second counters and IP blocks that survive a Redis outage.

The shared counters (storage/redis_counters.py) raise RedisUnavailable while Redis is down;
meanwhile each node counts in its own memory (``MemoryCounters``) — approximate, as these
limits are by nature: a client spread over N nodes gets up to N times its per-second limit,
and an IP blocked in Redis is not blocked until Redis answers again. The breaker logs the
switch once each way (storage/redis_breaker.py).
"""

from __future__ import annotations

from ..storage.redis_breaker import RedisUnavailable
from .throttle import Counters


class FallbackCounters:
    def __init__(self, primary: Counters, fallback: Counters) -> None:
        self.primary = primary
        self.fallback = fallback

    async def hit_rate(self, key: str, limit: int, now: float) -> int | None:
        try:
            return await self.primary.hit_rate(key, limit, now)
        except RedisUnavailable:
            return await self.fallback.hit_rate(key, limit, now)

    async def admit(
        self, ip: str, key: str, limit: int, now: float
    ) -> tuple[int | None, int | None]:
        try:
            return await self.primary.admit(ip, key, limit, now)
        except RedisUnavailable:
            return await self.fallback.admit(ip, key, limit, now)

    async def auth_failed(self, ip: str, now: float) -> None:
        try:
            await self.primary.auth_failed(ip, now)
        except RedisUnavailable:
            await self.fallback.auth_failed(ip, now)

    async def blocked_for(self, ip: str, now: float) -> int | None:
        try:
            return await self.primary.blocked_for(ip, now)
        except RedisUnavailable:
            return await self.fallback.blocked_for(ip, now)
