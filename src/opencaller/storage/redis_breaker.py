"""Whether Redis is usable right now (a circuit breaker).

Redis keeps the shared counters and limits, but the service must answer without it: the
first connection error or timeout opens the breaker, and from then on callers skip Redis at
once (``RedisUnavailable``) and use their fallback — the database for the limits, each
node's memory for the per-second counters. A background task pings Redis; when it answers,
the recovery callbacks run (the limits mark their windows as incomplete) and the breaker
closes. Each switch is logged once, never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("opencaller.redis")

# What "Redis is not there" looks like (BusyLoadingError, MasterNotFoundError and a primary
# that became a replica are ConnectionErrors too).
DOWN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)


class RedisUnavailable(Exception):
    """Redis is not usable now; the caller takes its fallback path."""


class RedisBreaker:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        probe_interval_s: float = 1.0,
        probe_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.up = True
        self._recover: list[Callable[[], Awaitable[None]]] = []
        self._probe: asyncio.Task[None] | None = None

    def on_recover(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` (against Redis) before traffic goes back to Redis."""
        self._recover.append(callback)

    def guard(self) -> _Guard:
        """Around one Redis operation: RedisUnavailable at once while the breaker is open,
        and opens it on a connection error or a timeout. (The client's socket timeouts bound
        the operation; no timer of our own on the hot path.)"""
        return _Guard(self)

    def trip(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        log.warning(
            "Redis unreachable (%s): limits are counted in the database and per-second"
            " counters kept in this node's memory until it answers again",
            type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}",
        )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            try:
                async with asyncio.timeout(self.probe_timeout_s):
                    await cast(Any, self.client.ping())
                    for callback in self._recover:
                        await callback()
            except Exception as exc:
                log.debug("Redis probe failed: %r", exc)
                continue
            self.up = True
            log.warning("Redis answers again: shared counters and limits are back in Redis")
            return

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe


class _Guard:
    __slots__ = ("breaker",)

    def __init__(self, breaker: RedisBreaker) -> None:
        self.breaker = breaker

    async def __aenter__(self) -> None:
        if not self.breaker.up:
            raise RedisUnavailable

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is not None and isinstance(exc, DOWN_ERRORS):
            self.breaker.trip(exc)
            raise RedisUnavailable from exc
        return False
