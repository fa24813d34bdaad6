"""A new authorization's limits, checked and recorded with its write (new_authorizations.py).

Two ways, the same answers (the test suite runs every rule both ways):

- **counted**: the write's own transaction counts the limits (per phone, service and
  ``unique`` key, under locks on PostgreSQL; SQLite has one writer at a time), then inserts
  and charges;
- **reserved** (Redis configured): one Lua script checks and records the limits
  (storage/redis_limits.py), then the write counts nothing. A reservation is taken back only
  when the write surely did not happen.

Redis is optional at run time too: while it is down (storage/redis_breaker.py), or while
its windows may miss authorizations written during an outage (``limits.WARM``), the limits
are counted in the database, exactly as without Redis (docs/deployment.md, "Redis outages").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..storage.conflicts import is_unique_violation
from ..storage.database import Database
from ..storage.redis_breaker import RedisUnavailable
from . import limits
from .accounts import Service
from .limits import LimitStore
from .new_authorizations import Created, NewAuthorizations, Outcome, Request
from .records import BY_UNIQUE, Authorization

# A duplicate ``unique`` waits this long at most for the request that holds its claim.
DUPLICATE_WAIT_S = 15.0


class Writes:
    def __init__(self, db: Database, limit_store: LimitStore | None) -> None:
        self.db = db
        self._store = limit_store
        self._node = uuid.uuid4().hex[:12]  # reservation tokens are unique across nodes
        self._seq = itertools.count()
        self.new = NewAuthorizations(db)

    @property
    def limit_store(self) -> LimitStore | None:
        """The store while it is usable; None: the database counts the limits."""
        store = self._store
        if store is None:
            return None
        if not store.available():
            store.missed()  # the caller counts in the database: Redis will lack this one
            return None
        return store

    def token(self) -> str:
        return f"{self._node}:{next(self._seq)}"

    async def _check(
        self,
        conn: AsyncConnection,
        service: Service,
        phone: str | None,
        now: float,
        *,
        hourly: bool = True,
    ) -> None:
        """The limits counted in the database, under their locks (held to the commit)."""
        limit = (service.settings.hourly_limit or 0) if hourly else 0
        await conn.run_sync(limits.count, service.id, limit, phone, now)

    async def _refuse_warm(
        self,
        verdict: str,
        score: float | None,
        service: Service,
        phone: str | None,
        now: float,
        *,
        hourly: bool = True,
        conn: AsyncConnection | None = None,
    ) -> UcallerError:
        """The store refused while its windows may be incomplete: the database's answer
        when it refuses too (it sees every row), else the store's. In ``conn`` if the
        caller has a transaction open (SQLite has one writer at a time)."""
        if conn is not None:
            await self._check(conn, service, phone, now, hourly=hourly)
        else:
            async with self.db.write() as own:
                await self._check(own, service, phone, now, hourly=hourly)
        refused = limits.refusal(verdict.removeprefix(limits.WARM_PREFIX), score, now)
        return refused or UcallerError(Code.INTERNAL)

    async def authorize(
        self, service: Service, values: dict[str, Any], *, is_test: bool, now: float
    ) -> tuple[Authorization, bool]:
        """initCall's write with its limits: the row, and whether it is new (else another
        request wrote the same ``unique``)."""
        if self.limit_store is None:
            return await self.counted(service, values, is_test=is_test, now=now)
        return await self.reserved(service, values, is_test=is_test, now=now)

    async def counted(
        self, service: Service, values: dict[str, Any], *, is_test: bool, now: float
    ) -> tuple[Authorization, bool]:
        """The limits counted in the database, in the write's transaction."""
        request = Request(
            values,
            counted=True,
            hourly_limit=service.settings.hourly_limit or 0,
            phone=None if is_test else values["phone"],
        )
        return _answer(await self.new.create(request))

    async def reserved(
        self, service: Service, values: dict[str, Any], *, is_test: bool, now: float
    ) -> tuple[Authorization, bool]:
        """The limits kept in Redis: reserve, then write without locks. A reservation is
        taken back only when the write surely did not happen."""
        assert self._store is not None
        store = self._store
        unique = values["unique_key"]
        phone = None if is_test else values["phone"]
        token = self.token()
        try:
            reserved = await self._reserve(store, token, service, phone, unique, now)
        except RedisUnavailable:
            store.missed()
            return await self.counted(service, values, is_test=is_test, now=now)
        if isinstance(reserved, Authorization):
            return reserved, False  # another request with the key wrote it meanwhile
        verdict, score = reserved
        if verdict == limits.UNKNOWN:
            return await self.counted(service, values, is_test=is_test, now=now)
        if verdict.startswith(limits.WARM_PREFIX):
            raise await self._refuse_warm(verdict, score, service, phone, now)
        refused = limits.refusal(verdict, score, now)
        if refused is not None:
            raise refused

        async def release() -> None:
            # Redis gone since: the reservation stays, on the side of refusing.
            with contextlib.suppress(RedisUnavailable):
                await store.release(token, phone=phone, service_id=service.id, unique=unique)

        if verdict == limits.WARM:
            # Recorded in Redis (so its windows fill up), and counted in the database.
            try:
                counted, new = await self.counted(service, values, is_test=is_test, now=now)
            except BaseException:
                await release()
                raise
            if not new:
                await release()
            return counted, new
        return await self._write_reserved(service, values, release)

    async def _reserve(
        self,
        store: LimitStore,
        token: str,
        service: Service,
        phone: str | None,
        unique: str | None,
        now: float,
    ) -> tuple[str, float | None] | Authorization:
        """The store's verdict; or, while another request holds a claim on the same
        ``unique`` key, the row that request writes (waited for)."""
        waited = 0.0
        while True:
            verdict, score = await store.reserve(
                token,
                phone=phone,
                service_id=service.id,
                hourly=service.settings.hourly_limit or 0,
                unique=unique,
                now=now,
            )
            if verdict != limits.DUPLICATE or unique is None:
                return verdict, score
            if waited > DUPLICATE_WAIT_S:
                raise UcallerError(Code.INTERNAL)
            await asyncio.sleep(0.01)
            waited += 0.01
            found = await self.find_unique(service.id, unique)
            if found is not None:
                return found

    async def _write_reserved(
        self,
        service: Service,
        values: dict[str, Any],
        release: Callable[[], Awaitable[None]],
    ) -> tuple[Authorization, bool]:
        try:
            outcome = await self.new.create(Request(values))
        except Exception as exc:
            unique = values["unique_key"]
            if unique is None or not is_unique_violation(exc):
                raise
            await release()  # the same key won elsewhere after our claim expired
            found = await self.find_unique(service.id, unique)
            if found is None:
                raise
            return found, False
        if not isinstance(outcome, Created) or not outcome.new:
            await release()
        return _answer(outcome)

    async def inbound(self, service: Service, values: dict[str, Any], now: float) -> Authorization:
        """An inbound verification: it does not face the hourly limit but counts towards it."""
        row, _ = _answer(await self.new.create(Request(values)))
        if self.limit_store is not None:
            await self.reserve_only(service, None, now)
        return row

    async def repeat(
        self,
        conn: AsyncConnection,
        service: Service,
        values: dict[str, Any],
        phone: str | None,
        now: float,
    ) -> Authorization:
        """A free repeat, in the transaction ``conn`` that checked its chain: its limits
        (the number's, if ``phone``; it counts towards the hourly limit but does not face
        it), then its row."""
        await self.check_repeat(conn, service, phone, now)
        row, _ = _answer(await self.new.create_in(conn, Request(values)))
        return row

    async def find_unique(self, service_id: int, unique: str) -> Authorization | None:
        row = await self.db.fetch_one(BY_UNIQUE, _unique(service_id, unique))
        return None if row is None else Authorization.from_row(row)

    async def check_repeat(
        self, conn: AsyncConnection, service: Service, phone: str | None, now: float
    ) -> None:
        """A repeat's limits (the number's, if ``phone``; it counts towards the hourly limit
        but does not face it), in the transaction ``conn`` that writes it."""
        recorded = await self.reserve_only(service, phone, now, conn=conn)
        if not recorded and phone is not None:
            await self._check(conn, service, phone, now, hourly=False)

    async def reserve_only(
        self,
        service: Service,
        phone: str | None,
        now: float,
        *,
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Record in Redis an authorization that does not face the hourly limit (repeats,
        inbound) but counts towards it, and check the number's limits if ``phone``. False
        when Redis could not decide: the caller counts in the database (the row is there
        for the database's counts either way)."""
        store = self.limit_store
        if store is None:
            return False
        hourly = -1 if service.settings.hourly_limit else 0
        if phone is None and not hourly:
            return True
        token = self.token()
        try:
            verdict, score = await store.reserve(
                token,
                phone=phone,
                service_id=service.id,
                hourly=hourly,
                unique=None,
                now=now,
            )
        except RedisUnavailable:
            store.missed()
            return False
        if verdict == limits.UNKNOWN:
            return False
        if verdict.startswith(limits.WARM_PREFIX):
            raise await self._refuse_warm(
                verdict, score, service, phone, now, hourly=False, conn=conn
            )
        refused = limits.refusal(verdict, score, now)
        if refused is not None:
            raise refused
        if verdict == limits.WARM and conn is not None and phone is not None:
            try:
                await self._check(conn, service, phone, now, hourly=False)
            except BaseException:
                with contextlib.suppress(RedisUnavailable):
                    await store.release(token, phone=phone, service_id=service.id, unique=None)
                raise
        return True


def _answer(outcome: Outcome) -> tuple[Authorization, bool]:
    if isinstance(outcome, UcallerError):
        raise outcome
    return outcome.row, outcome.new


def _unique(service_id: int, unique: str) -> dict[str, Any]:
    return {"service_id": service_id, "unique": unique}
