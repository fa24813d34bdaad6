"""Where the signals are counted, across nodes: Redis when configured, the database otherwise.

Counts are kept per key and window (``bucket = time // window_s``); a reading sums the
current and the previous window. An attempt adds one call to each of its keys; an admitted
call also remembers them (per service and number), so that its code, when entered, is
counted on the same keys and window; the same number admitted again within the window is
not counted again (the signals count distinct numbers). Refused attempts count too: a
prefix whose runs keep being refused becomes suspect as a whole. While Redis is down the
database counts (the breaker logs the switch once each way).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ...storage.database import Database
from ...storage.fraud_tables import fraud_admissions, fraud_counters
from ...storage.redis_breaker import RedisUnavailable

log = logging.getLogger("opencaller.fraud")

Counts = dict[str, tuple[int, int]]  # key -> (calls, codes entered)
Remember = tuple[int, str]  # (service id, phone) of an admitted call
# Rows of windows that no reading covers any more are deleted every CLEAN_EVERY attempts
# counted by a node (the database store; Redis keys expire by themselves).
CLEAN_EVERY = 1000

c = fraud_counters.c


class CounterStore(Protocol):
    async def read(self, keys: Sequence[str], buckets: Sequence[int]) -> Counts: ...

    async def count(
        self, keys: Sequence[str], bucket: int, now: float, remember: Remember | None
    ) -> None: ...

    async def convert(self, service_id: int, phone: str) -> list[str]: ...

    async def scan(self, prefix: str, buckets: Sequence[int]) -> Counts: ...


def _upsert(sqlite: bool) -> Any:
    ins = sqlite_insert if sqlite else pg_insert
    stmt = ins(fraud_counters).values(
        key=bindparam("k"), bucket=bindparam("b"), requests=bindparam("r"), verified=bindparam("v")
    )
    return stmt.on_conflict_do_update(
        index_elements=[c.key, c.bucket],
        set_={
            "requests": c.requests + stmt.excluded.requests,
            "verified": c.verified + stmt.excluded.verified,
        },
    )


def _remember(sqlite: bool) -> Any:
    ins = sqlite_insert if sqlite else pg_insert
    stmt = ins(fraud_admissions)
    return stmt.on_conflict_do_update(
        index_elements=[fraud_admissions.c.service_id, fraud_admissions.c.phone],
        set_={
            "bucket": stmt.excluded.bucket,
            "signal_keys": stmt.excluded.signal_keys,
            "created_at": stmt.excluded.created_at,
        },
    )


def _admission(keys: Sequence[str], bucket: int, now: float, remember: Remember) -> dict[str, Any]:
    return {
        "service_id": remember[0],
        "phone": remember[1],
        "bucket": bucket,
        "signal_keys": " ".join(keys),
        "created_at": now,
    }


class DbCounters:
    """The counters in the database: one read per decision, one transaction per admission."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._upsert = _upsert(db.sqlite)
        self._remember = _remember(db.sqlite)
        self._counted = 0

    async def read(self, keys: Sequence[str], buckets: Sequence[int]) -> Counts:
        q = (
            select(c.key, func.sum(c.requests), func.sum(c.verified))
            .where(c.key.in_(list(keys)), c.bucket.in_(list(buckets)))
            .group_by(c.key)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}

    async def count(
        self, keys: Sequence[str], bucket: int, now: float, remember: Remember | None
    ) -> None:
        # Sorted: two transactions upserting the same keys take their row locks in one order.
        rows = [{"k": k, "b": bucket, "r": 1, "v": 0} for k in sorted(keys)]
        async with self.db.write() as conn:
            if remember is not None:
                if await self._seen(conn, remember, bucket):
                    return
                await conn.execute(self._remember, _admission(keys, bucket, now, remember))
            await conn.execute(self._upsert, rows)
            self._counted += 1
            if self._counted % CLEAN_EVERY == 0:
                await conn.execute(delete(fraud_counters).where(c.bucket < bucket - 2))
                old = fraud_admissions.c.bucket < bucket - 2
                await conn.execute(delete(fraud_admissions).where(old))

    @staticmethod
    async def _seen(conn: AsyncConnection, remember: Remember, bucket: int) -> bool:
        """Whether this number was admitted in the window already (counted once: the
        per-number limits deal with repeats, the signals with distinct numbers)."""
        a = fraud_admissions.c
        q = select(a.bucket).where(a.service_id == remember[0], a.phone == remember[1])
        found = (await conn.execute(q)).scalar()
        return found is not None and int(found) >= bucket - 1

    async def convert(self, service_id: int, phone: str) -> list[str]:
        a = fraud_admissions.c
        where = (a.service_id == service_id, a.phone == phone)
        async with self.db.write() as conn:
            row = (await conn.execute(select(a.bucket, a.signal_keys).where(*where))).first()
            if row is None:
                return []
            keys = sorted(str(row.signal_keys).split())
            codes = [{"k": k, "b": row.bucket, "r": 0, "v": 1} for k in keys]
            await conn.execute(self._upsert, codes)
            await conn.execute(delete(fraud_admissions).where(*where))
        return keys

    async def scan(self, prefix: str, buckets: Sequence[int]) -> Counts:
        """Every key under ``prefix`` (for the dashboards, not for decisions)."""
        q = (
            select(c.key, func.sum(c.requests), func.sum(c.verified))
            .where(c.key.startswith(prefix, autoescape=True), c.bucket.in_(list(buckets)))
            .group_by(c.key)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}


class FallbackCounters:
    """Redis first; the database while Redis is unavailable."""

    def __init__(self, primary: CounterStore, fallback: CounterStore) -> None:
        self.primary = primary
        self.fallback = fallback

    async def read(self, keys: Sequence[str], buckets: Sequence[int]) -> Counts:
        try:
            return await self.primary.read(keys, buckets)
        except RedisUnavailable:
            return await self.fallback.read(keys, buckets)

    async def count(
        self, keys: Sequence[str], bucket: int, now: float, remember: Remember | None
    ) -> None:
        try:
            await self.primary.count(keys, bucket, now, remember)
        except RedisUnavailable:
            await self.fallback.count(keys, bucket, now, remember)

    async def convert(self, service_id: int, phone: str) -> list[str]:
        try:
            keys = await self.primary.convert(service_id, phone)
        except RedisUnavailable:
            keys = []
        # A call admitted while Redis was down was remembered in the database.
        return keys or await self.fallback.convert(service_id, phone)

    async def scan(self, prefix: str, buckets: Sequence[int]) -> Counts:
        try:
            return await self.primary.scan(prefix, buckets)
        except RedisUnavailable:
            return await self.fallback.scan(prefix, buckets)
