"""Counters (domain/throttle.py) kept in Redis, so every API node sees the same numbers.

Each operation is one Lua script, so the check and the update are atomic across nodes. Times
come from the caller's clock (not Redis's), which keeps tests with a fake clock exact; keys
carry a TTL only so that Redis cleans up after itself.

Every operation goes through the breaker (storage/redis_breaker.py): while Redis is down it
raises RedisUnavailable at once, and the caller (domain/throttle_fallback.py) counts in
memory instead.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, cast

import redis.asyncio as aioredis

from .redis_batch import Script, ScriptBatcher
from .redis_breaker import RedisBreaker

# KEYS[1] = block key of the IP, KEYS[2] = counter of one second; ARGV[1] = ttl (s).
# Returns {blocked-until or false, count including this hit}: one round trip per request.
_ADMIT = """
local blocked = redis.call('GET', KEYS[1])
local c = redis.call('INCR', KEYS[2])
if c == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {blocked, c}
"""

# KEYS[1] = counter of one second; ARGV[1] = ttl (s). Returns the count including this hit.
_HIT = """
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return c
"""

# KEYS[1] = sorted set of failure times, KEYS[2] = block key (value: blocked-until time).
# ARGV: now, window_s, limit, block_s, member. Returns 1 when this failure blocks the IP.
_FAIL = """
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], string.format('%.17g', now + tonumber(ARGV[4])),
             'EX', math.ceil(tonumber(ARGV[4])) + 1)
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisCounters:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "oc:",
        fail_limit: int = 20,
        fail_window_s: float = 300.0,
        block_s: float = 900.0,
        client: aioredis.Redis | None = None,
        breaker: RedisBreaker | None = None,
    ) -> None:
        self.redis: aioredis.Redis = client or aioredis.Redis.from_url(url)
        self.breaker = breaker or RedisBreaker(self.redis)
        self.prefix = prefix
        self.fail_limit = fail_limit
        self.fail_window_s = fail_window_s
        self.block_s = block_s
        self._hit = self.redis.register_script(_HIT)
        self.batcher = ScriptBatcher(self.redis)
        self._admit = Script(_ADMIT)
        self._fail = self.redis.register_script(_FAIL)
        self._seq = 0
        self._node = uuid.uuid4().hex[:12]

    async def admit(
        self, ip: str, key: str, limit: int, now: float
    ) -> tuple[int | None, int | None]:
        keys = [f"{self.prefix}blocked:{ip}", f"{self.prefix}rate:{key}:{int(now)}"]
        async with self.breaker.guard():
            raw, count = await self.batcher.run(self._admit, keys, [3])
        blocked = None
        if raw is not None:
            until = float(raw)
            if until > now:
                blocked = max(1, math.ceil(until - now))
        return blocked, (1 if int(count) > limit else None)

    async def hit_rate(self, key: str, limit: int, now: float) -> int | None:
        second = int(now)
        async with self.breaker.guard():
            count = await cast(Any, self._hit(keys=[f"{self.prefix}rate:{key}:{second}"], args=[3]))
        return 1 if int(count) > limit else None

    async def auth_failed(self, ip: str, now: float) -> None:
        # Members must be unique even when two failures share a timestamp.
        self._seq += 1
        member = f"{now!r}:{self._node}:{self._seq}"
        async with self.breaker.guard():
            await cast(
                Any,
                self._fail(
                    keys=[f"{self.prefix}fails:{ip}", f"{self.prefix}blocked:{ip}"],
                    args=[now, self.fail_window_s, self.fail_limit, self.block_s, member],
                ),
            )

    async def blocked_for(self, ip: str, now: float) -> int | None:
        async with self.breaker.guard():
            raw = await self.redis.get(f"{self.prefix}blocked:{ip}")
        if raw is None:
            return None
        until = float(raw)
        if until <= now:
            return None
        return max(1, math.ceil(until - now))

    async def ping(self) -> bool:
        try:
            return bool(await cast(Any, self.redis.ping()))
        except Exception:
            return False

    async def close(self) -> None:
        await self.breaker.close()
        await self.redis.aclose()
