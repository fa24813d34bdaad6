"""The fraud guard's counters in Redis (domain/fraud/counters.py has the contract).

A hash per key and window (fields ``r``: calls, ``v``: codes entered), and a string per
admitted call naming its keys. One pipelined round trip per reading, admission or code.
Keys expire three windows after they were last written, so Redis cleans up after itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .redis_breaker import RedisBreaker

INDEXED = ":channel:"  # keys the dashboards list (per-operator conversion by channel)


class RedisFraudCounters:
    def __init__(
        self, client: aioredis.Redis, *, prefix: str, breaker: RedisBreaker, window_s: float
    ) -> None:
        self.redis = client
        self.prefix = f"{prefix}fg:"
        self.breaker = breaker
        self.ttl = max(1, math.ceil(3 * window_s))

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
        async with self.breaker.guard():
            if remember is not None:
                # Counted once per number and window: only when this admission is new.
                value = f"{bucket} {' '.join(keys)}"
                fresh = await self.redis.set(
                    self._admission(*remember), value, ex=self.ttl, nx=True
                )
                if not fresh:
                    if await self._seen(remember, bucket):
                        return
                    await self.redis.set(self._admission(*remember), value, ex=self.ttl)
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                name = self._name(k, bucket)
                pipe.hincrby(name, "r", 1)
                pipe.expire(name, self.ttl)
                if INDEXED in k:
                    pipe.sadd(self._index(k), k)
                    pipe.expire(self._index(k), self.ttl)
            await pipe.execute()

    async def _seen(self, remember: tuple[int, str], bucket: int) -> bool:
        raw = await self.redis.get(self._admission(*remember))
        if raw is None:
            return False
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return int(text.split(" ", 1)[0]) >= bucket - 1

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
