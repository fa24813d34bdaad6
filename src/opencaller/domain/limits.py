"""Limits counted from the authorizations themselves (exact, sliding windows).

Per number (every service of the installation counts): 4 calls in any 60 s, 30 in any 24 h
(error 18), and 15 s between two authorizations (error 19). Per service: the hourly limit of
its settings (error 50). ``count`` takes the matching locks, held to the commit, so the count
and the insert that follows are one step.

With Redis configured the same rules are kept in Redis instead (``LimitStore``,
storage/redis_limits.py): one atomic check-and-record per request, no lock in the database.
"""

from __future__ import annotations

import math
from typing import Protocol

from sqlalchemy import Connection, Float, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..storage.locks import lock
from ..storage.statements import rows
from ..storage.tables import authorizations

PER_MINUTE = 4
PER_DAY = 30
MIN_GAP_S = 15.0
MINUTE = 60.0
DAY = 86_400.0
HOUR = 3_600.0

a = authorizations.c


def _wait(until: float, now: float) -> int:
    return max(1, math.ceil(until - now))


# Built once: on the hot path, building a statement costs more than running it.
_since_minute = bindparam("since_minute", type_=Float)
_NUMBER_USAGE = select(
    func.count().label("day_count"),
    func.sum(case((a.created_at > _since_minute, 1), else_=0)).label("minute_count"),
    func.min(a.created_at).label("oldest_day"),
    func.min(case((a.created_at > _since_minute, a.created_at), else_=None)).label("oldest_minute"),
    func.max(a.created_at).label("newest"),
).where(
    a.phone == bindparam("phone"),
    a.direction == "out",
    a.created_at > bindparam("since_day", type_=Float),
)


_SERVICE_HOUR = select(func.count().label("n"), func.min(a.created_at).label("oldest")).where(
    a.service_id == bindparam("service_id"), a.created_at > bindparam("since", type_=Float)
)


def check_number(conn: Connection, phone: str, now: float) -> None:
    params = {"phone": phone, "since_minute": now - MINUTE, "since_day": now - DAY}
    row = rows(conn, _NUMBER_USAGE, params)[0]
    day_count, newest = row["day_count"], row["newest"]
    minute_count = int(row["minute_count"] or 0)
    if day_count >= PER_DAY:
        raise UcallerError(Code.NUMBER_LIMIT, retry_after=_wait(row["oldest_day"] + DAY, now))
    if minute_count >= PER_MINUTE:
        raise UcallerError(Code.NUMBER_LIMIT, retry_after=_wait(row["oldest_minute"] + MINUTE, now))
    if newest is not None and now - newest < MIN_GAP_S:
        raise UcallerError(Code.NUMBER_WAIT, retry_after=_wait(newest + MIN_GAP_S, now))


def check_service_hourly(conn: Connection, service_id: int, limit: int, now: float) -> None:
    params = {"service_id": service_id, "since": now - HOUR}
    row = rows(conn, _SERVICE_HOUR, params)[0]
    n, oldest = row["n"], row["oldest"]
    if n >= limit:
        raise UcallerError(Code.HOURLY_LIMIT, retry_after=_wait(oldest + HOUR, now))


def count(
    conn: Connection, service_id: int, hourly_limit: int, phone: str | None, now: float
) -> None:
    """The limits counted in the database, under their locks (held to the commit): the
    service's hourly limit if ``hourly_limit``, the number's limits if ``phone``. Raises the
    refusal. Synchronous SQLAlchemy: the same code runs in SQLite's writer thread and, through
    ``run_sync``, in an async transaction."""
    if hourly_limit:
        lock(conn, "service", service_id)
        check_service_hourly(conn, service_id, hourly_limit, now)
    if phone is not None:
        lock(conn, "phone", phone)
        check_number(conn, phone, now)


# -- limits kept outside the database (storage/redis_limits.py) ----------------------------


async def complete_since(conn: AsyncConnection, now: float) -> float:
    """For a new (empty) store: since when it holds every authorization of the windows. With
    none in the last day, at once; else from now on (the database counts for a day). The
    newest row by id (the primary key's index, not a scan); a minute's margin covers nodes
    whose clocks disagree."""
    newest = (await conn.execute(select(a.created_at).order_by(a.id.desc()).limit(1))).scalar()
    if newest is not None and newest > now - DAY - MINUTE:
        return now
    return now - DAY


DUPLICATE = "dup"  # another request holds a claim on the same ``unique`` key
# Recorded, but the store's windows may miss authorizations (after an outage of the store):
# the database counts too, and decides.
WARM = "warm"
WARM_PREFIX = "warm:"  # a refusal while the windows may be incomplete
UNKNOWN = "unknown"  # the store could not tell: the database counts


class LimitStore(Protocol):
    """Checks and records the limits of one authorization in one atomic step. Raises
    RedisUnavailable (storage/redis_breaker.py) when it cannot be reached."""

    def available(self) -> bool:
        """False while the store is known to be down (the database counts meanwhile)."""
        ...

    def missed(self) -> None:
        """An authorization is being counted without the store (it was down)."""
        ...

    async def reserve(
        self,
        token: str,
        *,
        phone: str | None,
        service_id: int,
        hourly: int,
        unique: str | None,
        now: float,
    ) -> tuple[str, float | None]: ...

    async def release(
        self, token: str, *, phone: str | None, service_id: int, unique: str | None
    ) -> None: ...


def refusal(verdict: str, score: float | None, now: float) -> UcallerError | None:
    """The error for a refused reservation, with the same Retry-After as the SQL counts."""
    if verdict == "ok" or score is None:
        return None
    if verdict == "hour":
        return UcallerError(Code.HOURLY_LIMIT, retry_after=_wait(score + HOUR, now))
    if verdict == "day":
        return UcallerError(Code.NUMBER_LIMIT, retry_after=_wait(score + DAY, now))
    if verdict == "minute":
        return UcallerError(Code.NUMBER_LIMIT, retry_after=_wait(score + MINUTE, now))
    return UcallerError(Code.NUMBER_WAIT, retry_after=_wait(score + MIN_GAP_S, now))
