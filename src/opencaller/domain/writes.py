"""How a new authorization reaches the database, together with its limits.

Two ways, the same answers (the test suite runs every rule both ways):

- **counted**: one transaction checks the limits by counting rows under advisory locks (per
  phone, service and ``unique`` key), then inserts and charges;
- **reserved** (Redis configured): one Lua script checks and records the limits
  (storage/redis_limits.py), then the write needs no lock; on PostgreSQL it is one statement,
  shared by the initCalls of the same moment (group_writes.py). A reservation is taken back
  only when the write surely did not happen.

Redis is optional at run time too: while it is down (storage/redis_breaker.py), or while
its windows may miss authorizations written during an outage (``limits.WARM``), the limits
are counted in the database, exactly as without Redis (docs/deployment.md, "Redis outages").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from dataclasses import replace
from typing import Any

import asyncpg
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..storage.database import Database
from ..storage.redis_breaker import RedisUnavailable
from ..storage.tables import authorizations
from . import billing, limits
from .accounts import Service
from .group_writes import AuthorizationWriter
from .limits import LimitStore
from .records import BY_UNIQUE, INSERT, Authorization

a = authorizations.c

# A duplicate ``unique`` waits this long at most for the request that holds its claim.
DUPLICATE_WAIT_S = 15.0


class Writes:
    def __init__(self, db: Database, limit_store: LimitStore | None) -> None:
        self.db = db
        self._store = limit_store
        self._node = uuid.uuid4().hex[:12]  # reservation tokens are unique across nodes
        self._seq = itertools.count()
        # PostgreSQL: concurrent initCalls are written many per statement (group_writes.py).
        self._group = None if db.sqlite else AuthorizationWriter(db)

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
        limit = service.settings.hourly_limit
        if hourly and limit:
            await self.db.lock(conn, "service", service.id)
            await limits.check_service_hourly(conn, service.id, limit, now)
        if phone is not None:
            await self.db.lock(conn, "phone", phone)
            await limits.check_number(conn, phone, now)

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

    async def counted(
        self, service: Service, values: dict[str, Any], *, is_test: bool, now: float
    ) -> tuple[Authorization, bool]:
        """The limits counted in the database: check and insert under locks, one transaction.
        The row, and whether it is new (else another request wrote the same ``unique``)."""
        phone, unique = values["phone"], values["unique_key"]
        async with self.db.write() as conn:
            if unique is not None:
                await self.db.lock(conn, "unique", f"{service.id}:{unique}")
                row = (await conn.execute(BY_UNIQUE.clause, _unique(service.id, unique))).first()
                if row is not None:
                    return Authorization.from_row(row), False
            await self._check(conn, service, None if is_test else phone, now)
            return await self.insert(conn, values), True

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
        waited = 0.0
        while True:
            try:
                verdict, score = await store.reserve(
                    token,
                    phone=phone,
                    service_id=service.id,
                    hourly=service.settings.hourly_limit or 0,
                    unique=unique,
                    now=now,
                )
            except RedisUnavailable:
                store.missed()
                return await self.counted(service, values, is_test=is_test, now=now)
            if verdict != limits.DUPLICATE:
                break
            # Another request with the same key is being written: wait for its row.
            if waited > DUPLICATE_WAIT_S:
                raise UcallerError(Code.INTERNAL)
            await asyncio.sleep(0.01)
            waited += 0.01
            found = await self.find_unique(service.id, unique)
            if found is not None:
                return found, False
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
        try:
            row = await self._once(values)
        except (IntegrityError, asyncpg.UniqueViolationError):
            await release()  # the same key won elsewhere after our claim expired
            found = await self.find_unique(service.id, unique)
            if found is None:
                raise
            return found, False
        if row is None:
            await release()
            raise UcallerError(Code.LOW_BALANCE)
        return row, True

    async def _once(self, values: dict[str, Any]) -> Authorization | None:
        """Insert and charge with no lock; None (and nothing written) if the balance does not
        cover the price."""
        if self._group is not None:
            row = await self._group.write(values)
            return None if row is None else Authorization.from_row(row)
        try:
            async with self.db.write() as conn:
                return await self.insert(conn, values)
        except UcallerError as err:
            if err.code == Code.LOW_BALANCE:
                return None
            raise

    async def insert(self, conn: AsyncConnection, values: dict[str, Any]) -> Authorization:
        """The row first, the money last: the account's balance row is locked from the charge
        to the commit, so that stretch is kept to one statement. Raises LOW_BALANCE."""
        row = Authorization.from_row((await conn.execute(INSERT.clause, values)).one())
        if row.cost > 0:
            after = await billing.charge(
                conn,
                row.account_id,
                row.cost,
                now=row.created_at,
                channel=row.kind,
                authorization_id=row.id,
            )
            if after is None:
                raise UcallerError(Code.LOW_BALANCE)
            if row.balance_before != after + row.cost:
                # Another charge of the account committed between our insert and our charge:
                # getInfo's balance is the one right before this charge.
                exact = after + row.cost
                await conn.execute(
                    update(authorizations).where(a.id == row.id).values(balance_before=exact)
                )
                row = replace(row, balance_before=exact)
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


def _unique(service_id: int, unique: str) -> dict[str, Any]:
    return {"service_id": service_id, "unique": unique}
