"""How a new authorization reaches the database, together with its limits.

Two ways, the same answers (the test suite runs every rule both ways):

- **counted**: one transaction checks the limits by counting rows under advisory locks (per
  phone, service and ``unique`` key), then inserts and charges;
- **reserved** (Redis configured): one Lua script checks and records the limits
  (storage/redis_limits.py), then the write needs no lock; on PostgreSQL it is one statement,
  shared by the initCalls of the same moment (group_writes.py). A reservation is taken back
  only when the write surely did not happen.
"""

from __future__ import annotations

import asyncio
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
        self.limit_store = limit_store
        self._node = uuid.uuid4().hex[:12]  # reservation tokens are unique across nodes
        self._seq = itertools.count()
        # PostgreSQL: concurrent initCalls are written many per statement (group_writes.py).
        self._group = None if db.sqlite else AuthorizationWriter(db)

    def token(self) -> str:
        return f"{self._node}:{next(self._seq)}"

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
            hourly = service.settings.hourly_limit
            if hourly:
                await self.db.lock(conn, "service", service.id)
                await limits.check_service_hourly(conn, service.id, hourly, now)
            if not is_test:
                await self.db.lock(conn, "phone", phone)
                await limits.check_number(conn, phone, now)
            return await self.insert(conn, values), True

    async def reserved(
        self, service: Service, values: dict[str, Any], *, is_test: bool, now: float
    ) -> tuple[Authorization, bool]:
        """The limits kept in Redis: reserve, then write without locks. A reservation is
        taken back only when the write surely did not happen."""
        assert self.limit_store is not None
        store = self.limit_store
        unique = values["unique_key"]
        phone = None if is_test else values["phone"]
        token = self.token()
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
        refused = limits.refusal(verdict, score, now)
        if refused is not None:
            raise refused

        async def release() -> None:
            await store.release(token, phone=phone, service_id=service.id, unique=unique)

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

    async def reserve_only(self, service: Service, phone: str | None, now: float) -> None:
        """Record in Redis an authorization that does not face the hourly limit (repeats,
        inbound) but counts towards it, and check the number's limits if ``phone``."""
        assert self.limit_store is not None
        hourly = -1 if service.settings.hourly_limit else 0
        if phone is None and not hourly:
            return
        verdict, score = await self.limit_store.reserve(
            self.token(),
            phone=phone,
            service_id=service.id,
            hourly=hourly,
            unique=None,
            now=now,
        )
        refused = limits.refusal(verdict, score, now)
        if refused is not None:
            raise refused


def _unique(service_id: int, unique: str) -> dict[str, Any]:
    return {"service_id": service_id, "unique": unique}
