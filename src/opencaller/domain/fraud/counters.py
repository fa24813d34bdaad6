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

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ...storage.database import Database
from ...storage.fraud_tables import fraud_admissions, fraud_counters
from ...storage.redis_breaker import RedisUnavailable

log = logging.getLogger("opencaller.fraud")

Counts = dict[str, tuple[int, int]]  # key -> (calls, codes entered)
Remember = tuple[int, str]  # (service id, phone) of an admitted call
# Rows of windows that no reading covers any more are deleted every CLEAN_EVERY writes of a
# node (the database store; Redis keys expire by themselves).
CLEAN_EVERY = 100
FLUSH_EVERY_S = 0.2
FLUSH_AT = 500  # (key, window) pairs waiting

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
    """The counters in the database. Counts are added in memory and written together, at most
    FLUSH_EVERY_S after the first or once FLUSH_AT are waiting, in one transaction: SQLite has
    a single writer, and one more write transaction per initCall would halve its rate. Readings
    add what this node has not written yet, so its own decisions are exact; other nodes (or
    processes) see them up to FLUSH_EVERY_S late. A failed write is logged and dropped."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._upsert = _upsert(db.sqlite)
        self._remember = _remember(db.sqlite)
        self._flushes = 0
        self._pending: dict[tuple[str, int], list[int]] = {}  # (key, bucket) -> [calls, codes]
        self._admitted: dict[Remember, dict[str, Any]] = {}  # not written yet
        self._first_pending = 0.0
        self._lock = asyncio.Lock()

    async def read(self, keys: Sequence[str], buckets: Sequence[int]) -> Counts:
        q = (
            select(c.key, func.sum(c.requests), func.sum(c.verified))
            .where(c.key.in_(list(keys)), c.bucket.in_(list(buckets)))
            .group_by(c.key)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        found = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}
        return self._with_pending(found, set(keys).__contains__, buckets)

    async def scan(self, prefix: str, buckets: Sequence[int]) -> Counts:
        """Every key under ``prefix`` (for the dashboards, not for decisions)."""
        q = (
            select(c.key, func.sum(c.requests), func.sum(c.verified))
            .where(c.key.startswith(prefix, autoescape=True), c.bucket.in_(list(buckets)))
            .group_by(c.key)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        found = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}
        return self._with_pending(found, lambda k: k.startswith(prefix), buckets)

    def _with_pending(
        self, found: Counts, wanted: Callable[[str], bool], buckets: Sequence[int]
    ) -> Counts:
        for (key, bucket), (calls, codes) in self._pending.items():
            if bucket in buckets and wanted(key):
                old = found.get(key, (0, 0))
                found[key] = (old[0] + calls, old[1] + codes)
        return found

    async def count(
        self, keys: Sequence[str], bucket: int, now: float, remember: Remember | None
    ) -> None:
        if remember is not None:
            if await self._seen(remember, bucket):
                return
            self._admitted[remember] = _admission(keys, bucket, now, remember)
        for k in keys:
            self._add(k, bucket, 0)
        await self._maybe_flush(bucket)

    async def convert(self, service_id: int, phone: str) -> list[str]:
        local = self._admitted.pop((service_id, phone), None)
        if local is not None:
            keys, bucket = str(local["signal_keys"]).split(), int(local["bucket"])
        else:
            found = await self._take_admission(service_id, phone)
            if found is None:
                return []
            keys, bucket = found
        for k in keys:
            self._add(k, bucket, 1)
        await self._maybe_flush(bucket)
        return keys

    def _add(self, key: str, bucket: int, column: int) -> None:
        if not self._pending:
            self._first_pending = time.monotonic()
        counts = self._pending.setdefault((key, bucket), [0, 0])
        counts[column] += 1

    async def _seen(self, remember: Remember, bucket: int) -> bool:
        """Whether this number was counted in the window already (counted once: the
        per-number limits deal with repeats, the signals with distinct numbers)."""
        local = self._admitted.get(remember)
        if local is not None:
            return int(local["bucket"]) >= bucket - 1
        a = fraud_admissions.c
        q = select(a.bucket).where(a.service_id == remember[0], a.phone == remember[1])
        async with self.db.read() as conn:
            found = (await conn.execute(q)).scalar()
        return found is not None and int(found) >= bucket - 1

    async def _take_admission(self, service_id: int, phone: str) -> tuple[list[str], int] | None:
        a = fraud_admissions.c
        where = (a.service_id == service_id, a.phone == phone)
        async with self.db.read() as conn:  # most codes have nothing here: no write then
            if (await conn.execute(select(a.bucket).where(*where))).first() is None:
                return None
        async with self.db.write() as conn:
            row = (await conn.execute(select(a.bucket, a.signal_keys).where(*where))).first()
            if row is None:
                return None
            await conn.execute(delete(fraud_admissions).where(*where))
        return str(row.signal_keys).split(), int(row.bucket)

    async def _maybe_flush(self, bucket: int) -> None:
        due = time.monotonic() - self._first_pending >= FLUSH_EVERY_S
        if self._pending and (due or len(self._pending) >= FLUSH_AT):
            await self.flush(bucket)

    async def flush(self, bucket: int) -> None:
        """Write what this node counted (one transaction)."""
        async with self._lock:
            pending, self._pending = self._pending, {}
            admitted, self._admitted = self._admitted, {}
            if not pending and not admitted:
                return
            # Sorted: two transactions upserting the same keys take their row locks in order.
            rows = [{"k": k, "b": b, "r": v[0], "v": v[1]} for (k, b), v in sorted(pending.items())]
            try:
                await self._write(rows, list(admitted.values()), bucket)
            except Exception:
                log.warning("fraud counters not written: %d keys dropped", len(rows), exc_info=True)

    async def _write(self, rows: list[dict[str, Any]], admitted: list[Any], bucket: int) -> None:
        async with self.db.write() as conn:
            if admitted:
                await conn.execute(self._remember, admitted)
            if rows:
                await conn.execute(self._upsert, rows)
            self._flushes += 1
            if self._flushes % CLEAN_EVERY == 0:
                await conn.execute(delete(fraud_counters).where(c.bucket < bucket - 2))
                old = fraud_admissions.c.bucket < bucket - 2
                await conn.execute(delete(fraud_admissions).where(old))


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
