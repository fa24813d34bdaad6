"""The per-number and per-service limits (domain/limits.py) kept in Redis.

With Redis configured, initCall checks and records its limits in one Lua script, so the
database write that follows needs no lock and no count: one round trip to Redis and one
statement to PostgreSQL. Each sorted set holds one member per authorization (a token made by
the caller), scored with its creation time from the caller's clock, exactly the times the
database rows get; the windows are the same comparisons as the SQL counts.

A reservation whose write did not happen (balance too low, a duplicate ``unique``) is
released. If a node dies between the two, the member stays: the error is on the side of
refusing, never of letting an extra call through.

**Complete windows.** The sets only hold what was recorded in Redis. While Redis is down,
the database counts (domain/writes.py) and Redis misses those authorizations; a Redis that
restarted may have lost its sets. So a marker key holds the time since which Redis has seen
every authorization (``since``); until the longest window (a day) has passed since then, the
script still checks and records, but answers ``warm`` instead of ``ok``, and the caller also
counts in the database under its locks. A node that saw Redis come back moves ``since`` to
that moment; a missing marker (new or emptied Redis) answers ``unknown``, and the caller
sets it from the database (``establish``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from .redis_batch import Script, ScriptBatcher
from .redis_breaker import RedisBreaker

WARM = "warm"  # checked and recorded, but Redis's windows may miss calls: count in the db too
UNKNOWN = "unknown"  # no marker (a new or emptied Redis)

# KEYS: [1] the number's set, [2] the service's hourly set, [3] the unique-key claim,
#       [4] the marker: since when Redis has seen every authorization.
# ARGV: [1] now, [2] token, [3] hourly limit (0: none, -1: record without checking),
#       [4] '1' to check and record the number, [5] claim ttl ms (0: no claim),
#       [6] per minute, [7] per day, [8] minimum gap, [9] minute, [10] day, [11] hour.
# Returns {'ok'} | {'warm'} | {'unknown'} | {'dup'}
#       | {'hour'|'day'|'minute'|'gap', score of the entry that decides}; while the windows
#       are incomplete a refusal is prefixed 'warm:' (the database decides the answer).
_RESERVE = """
local complete = redis.call('GET', KEYS[4])
if not complete then return {'unknown'} end
local now = tonumber(ARGV[1])
local w = ''
if now - tonumber(complete) < tonumber(ARGV[10]) then w = 'warm:' end
local token = ARGV[2]
local hourly = tonumber(ARGV[3])
local number = ARGV[4] == '1'
local claim_ms = tonumber(ARGV[5])
local function f(x) return string.format('%.17g', x) end
if claim_ms > 0 and redis.call('EXISTS', KEYS[3]) == 1 then return {'dup'} end
if hourly ~= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', f(now - tonumber(ARGV[11])))
  if hourly > 0 and redis.call('ZCARD', KEYS[2]) >= hourly then
    return {w .. 'hour', redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]}
  end
end
if number then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', f(now - tonumber(ARGV[10])))
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[7]) then
    return {w .. 'day', redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]}
  end
  local since = '(' .. f(now - tonumber(ARGV[9]))
  if redis.call('ZCOUNT', KEYS[1], since, '+inf') >= tonumber(ARGV[6]) then
    local first = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    return {w .. 'minute', first[2]}
  end
  local newest = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if newest[2] and now - tonumber(newest[2]) < tonumber(ARGV[8]) then
    return {w .. 'gap', newest[2]}
  end
end
if hourly ~= 0 then
  redis.call('ZADD', KEYS[2], ARGV[1], token)
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[11])) + 1)
end
if number then
  redis.call('ZADD', KEYS[1], ARGV[1], token)
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[10])) + 1)
end
if claim_ms > 0 then redis.call('SET', KEYS[3], token, 'PX', claim_ms) end
if w ~= '' then return {'warm'} end
return {'ok'}
"""

# KEYS[1] = the marker; ARGV[1] = a time. ARGV[2] = '0': moves an existing marker forward to
# that time (never back); '1': sets a missing marker. A missing marker stays missing for '0':
# the next reservation asks the database (``establish``).
_SINCE = """
local since = redis.call('GET', KEYS[1])
if ARGV[2] == '1' then
  if since then return 0 end
elseif not since or tonumber(since) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# Same KEYS; ARGV[1] = token. Takes back what _RESERVE recorded for that token.
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
"""

# Loaded once into a Redis; gone only when Redis lost all its scripts (a restart, a failover,
# SCRIPT FLUSH) — unlike a script missing because a new version of opencaller changed it.
_CANARY = Script("-- opencaller: Redis still has the scripts loaded before\nreturn 1")

RECOVERY_MARGIN_S = 1.0

# A claim on a ``unique`` key only has to outlive the one statement that writes the row; the
# database's unique constraint is what finally decides.
CLAIM_MS = 10_000


@dataclass(frozen=True, slots=True)
class Windows:
    """The rules' numbers, given by the domain (domain/limits.py owns them)."""

    per_minute: int
    per_day: int
    min_gap_s: float
    minute_s: float
    day_s: float
    hour_s: float


class RedisLimits:
    def __init__(
        self,
        batcher: ScriptBatcher,
        *,
        prefix: str,
        windows: Windows,
        breaker: RedisBreaker | None = None,
        establish: Callable[[float], Awaitable[float]] | None = None,
    ) -> None:
        """``establish(now)``: since when a new (empty) Redis holds every authorization of
        the windows — from the database; without it, an empty Redis is taken as complete."""
        self.batcher = batcher
        self.prefix = prefix
        self.windows = windows
        self.breaker = breaker
        self.establish = establish
        self._reserve = Script(_RESERVE)
        self._release = Script(_RELEASE)
        self._since = Script(_SINCE)
        self.marker = f"{prefix}limits:since"
        self._missed = False  # authorizations were counted without Redis (it was down)

    def available(self) -> bool:
        return self.breaker is None or self.breaker.up

    def missed(self) -> None:
        self._missed = True

    async def recovered(self, now: float) -> None:
        """Redis answers again (the breaker's probe): if this node counted authorizations
        without it meanwhile, Redis lacks them. The margin covers a request that took its
        time just before the breaker closed and is counted in the database after this."""
        if not self._missed:
            return
        self._missed = False
        try:
            await self.restart_windows(now + RECOVERY_MARGIN_S)
        except BaseException:
            self._missed = True
            raise

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext() if self.breaker is None else self.breaker.guard()

    def _keys(self, phone: str | None, service_id: int, unique: str | None) -> list[str]:
        p = self.prefix
        return [
            f"{p}num:{phone}",
            f"{p}hour:{service_id}",
            f"{p}uniq:{service_id}:{unique}",
            self.marker,
        ]

    async def restart_windows(self, now: float) -> None:
        """Redis may have missed authorizations until ``now`` (it was away, or restarted
        from a snapshot): the database counts too until the longest window has passed.
        Called by the breaker's probe and the batcher's lost-scripts hook, before traffic
        reaches Redis again: a plain EVAL, neither through the breaker nor the batcher."""
        client = self.batcher.client
        await cast(Any, client.eval(_SINCE, 1, self.marker, repr(now), 0))

    async def scripts_lost(self, now: float) -> None:
        """A script was missing: if Redis lost all of them, it restarted (or failed over)
        and may have lost the newest windows, so the marker moves before any script is
        loaded again (the batcher's hook)."""
        client = self.batcher.client
        present = await cast(Any, client.script_exists(_CANARY.sha))
        if present and present[0]:
            return  # only a changed script (an upgrade)
        await self.restart_windows(now)
        await cast(Any, client.script_load(_CANARY.source))

    async def _set_missing_marker(self, now: float) -> None:
        since = now - self.windows.day_s
        if self.establish is not None:
            since = await self.establish(now)
        async with self._guard():
            await self.batcher.run(self._since, [self.marker], [repr(since), 1])

    async def reserve(
        self,
        token: str,
        *,
        phone: str | None,
        service_id: int,
        hourly: int,
        unique: str | None,
        now: float,
    ) -> tuple[str, float | None]:
        """``hourly``: the service's limit, 0 for none, -1 to record without checking.
        ``phone`` None: the number's limits do not apply (test numbers)."""
        w = self.windows
        args: list[str | int] = [
            repr(now),
            token,
            hourly,
            1 if phone else 0,
            CLAIM_MS if unique else 0,
            w.per_minute,
            w.per_day,
            repr(w.min_gap_s),
            repr(w.minute_s),
            repr(w.day_s),
            repr(w.hour_s),
        ]
        keys = self._keys(phone, service_id, unique)
        for _ in range(2):
            async with self._guard():
                reply = await self.batcher.run(self._reserve, keys, args)
            verdict = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if verdict != UNKNOWN:
                break
            await self._set_missing_marker(now)
        else:
            verdict = UNKNOWN  # emptied again at once: the caller counts in the database
        return verdict, (float(reply[1]) if len(reply) > 1 else None)

    async def release(
        self, token: str, *, phone: str | None, service_id: int, unique: str | None
    ) -> None:
        keys = self._keys(phone, service_id, unique)
        async with self._guard():
            await self.batcher.run(self._release, keys, [token])
