"""The fraud guard's counters in Redis (domain/fraud/counters.py has the contract).

A hash per key and window (fields ``r``: calls, ``v``: codes entered), and a string per
admitted call naming its keys. One round trip per reading, attempt counted or code.
Keys expire three windows after they were last written, so Redis cleans up after itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .redis_batch import Script, ScriptBatcher
from .redis_breaker import RedisBreaker

INDEXED = ":channel:"  # keys the dashboards list (per-operator conversion by channel)

# One round trip per counted attempt. KEYS[1] = the admission ("" for a refused attempt),
# KEYS[2..] = the hashes of this window; ARGV = ttl, bucket, admission value, then the signal
# keys and their index sets ("" when not indexed). A number admitted in this or the previous
# window already is not counted again.
_COUNT = """
local ttl, bucket, n = tonumber(ARGV[1]), tonumber(ARGV[2]), #KEYS - 1
if KEYS[1] ~= '' then
  local old = redis.call('GET', KEYS[1])
  if old and tonumber(string.match(old, '^%d+')) >= bucket - 1 then return 0 end
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ttl)
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i + 1], 'r', 1)
  redis.call('EXPIRE', KEYS[i + 1], ttl)
  local index = ARGV[3 + n + i]
  if index ~= '' then
    redis.call('SADD', index, ARGV[3 + i])
    redis.call('EXPIRE', index, ttl)
  end
end
return 1
"""


class RedisFraudCounters:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        breaker: RedisBreaker,
        batcher: ScriptBatcher,
        window_s: float,
    ) -> None:
        self.redis = client
        self.prefix = f"{prefix}fg:"
        self.breaker = breaker
        self.ttl = max(1, math.ceil(3 * window_s))
        self.batcher = batcher
        self._count = Script(_COUNT)

    def _name(self, key: str, bucket: int) -> str:
        return f"{self.prefix}{key}:{bucket}"

    def _index(self, key: str) -> str:
        """The set naming the keys of one scope and signal (``s12:channel``), for scans."""
        scope, signal, _ = key.split(":", 2)
        return f"{self.prefix}idx:{scope}:{signal}"

    def _admission(self, service_id: int, phone: str) -> str:
        return f"{self.prefix}adm:{service_id}:{phone}"

    async def read(self, keys: Sequence[str], buckets: Sequence[int]) -> dict[str, tuple[int, int]]:
        async with self.breaker.guard():
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                for b in buckets:
                    pipe.hmget(self._name(k, b), "r", "v")
            replies: list[Any] = await pipe.execute()
        found: dict[str, tuple[int, int]] = {}
        it = iter(replies)
        for k in keys:
            calls = codes = 0
            for _ in buckets:
                r, v = next(it)
                calls += int(r or 0)
                codes += int(v or 0)
            found[k] = (calls, codes)
        return found

    async def count(
        self, keys: Sequence[str], bucket: int, now: float, remember: tuple[int, str] | None
    ) -> None:
        names = [self._name(k, bucket) for k in keys]
        indexes = [self._index(k) if INDEXED in k else "" for k in keys]
        admission = self._admission(*remember) if remember is not None else ""
        value = f"{bucket} {' '.join(keys)}"
        async with self.breaker.guard():
            await self.batcher.run(
                self._count, [admission, *names], [self.ttl, bucket, value, *keys, *indexes]
            )

    async def convert(self, service_id: int, phone: str) -> list[str]:
        async with self.breaker.guard():
            raw = await self.redis.getdel(self._admission(service_id, phone))
            if raw is None:
                return []
            bucket, *keys = (raw.decode() if isinstance(raw, bytes) else str(raw)).split()
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                name = self._name(k, int(bucket))
                pipe.hincrby(name, "v", 1)
                pipe.expire(name, self.ttl)
            await pipe.execute()
        return keys

    async def scan(self, prefix: str, buckets: Sequence[int]) -> dict[str, tuple[int, int]]:
        """Every indexed key under ``prefix`` (``s12:channel:``)."""
        scope, signal = prefix.split(":")[:2]
        async with self.breaker.guard():
            members = await self.redis.smembers(f"{self.prefix}idx:{scope}:{signal}")
        keys = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        return await self.read(keys, buckets) if keys else {}
