"""Creating an authorization: its row, its charge and its ledger row. The one place it is done.

initCall, initRepeat and inbound waiting all come here (``NewAuthorizations``). A request
(``Request``) says what the transaction must count first: with ``counted`` the limits are
counted in the database under their locks (domain/limits.py); without, they were already
checked elsewhere (Redis, or a repeat's own transaction). The answer (``Outcome``) is the row,
the row another request wrote with the same ``unique`` key, or the refusal.

One implementation, ``write``, synchronous SQLAlchemy code for an open transaction; the
engines differ only where the statements do:

- **SQLite**: ``write`` runs in the writer thread (storage/sqlite_writer.py), a whole batch of
  requests per transaction and per thread hop, in arrival order — so the balance covers
  exactly the first ones it can pay for, and a ``unique`` written earlier in the batch is
  found like any other.
- **PostgreSQL, limits counted**: ``write`` in its own transaction (``run_sync``), many at
  once on the pool; the charge is one statement (``INSERT_CHARGED``), so the account's row is
  locked for one round trip.
- **PostgreSQL, limits in Redis**: no transaction needed; ``INSERT_CHARGED`` alone, or, for the
  requests that arrive while one is in flight, one statement for all (group_writes.py).

Batching (domain/batches.py) never changes an answer, and a batch that fails is logged,
counted in /metrics and written again one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Connection, Float, bindparam, insert, literal, select
from sqlalchemy import update as update_
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..storage.database import Database
from ..storage.hot import Hot
from ..storage.locks import lock
from ..storage.statements import first, rows
from ..storage.tables import accounts, authorizations, ledger
from . import billing, limits
from .batches import Batcher
from .group_writes import write_many
from .records import BY_UNIQUE, NEW_COLUMNS, Authorization

__all__ = ["Created", "NewAuthorizations", "Outcome", "Request", "write"]

OPERATION = "create_authorization"  # the label of its batches in /metrics


@dataclass(frozen=True, slots=True)
class Request:
    values: dict[str, Any]  # the row's NEW_COLUMNS
    counted: bool = False  # count the limits in this transaction, under their locks
    hourly_limit: int = 0  # the service's, when counted (0: none)
    phone: str | None = None  # the number whose limits are counted (None: a test number)


@dataclass(frozen=True, slots=True)
class Created:
    row: Authorization
    new: bool  # False: another request had written the same ``unique`` key


Outcome = Created | UcallerError


def _new_values() -> dict[str, Any]:
    return {name: bindparam(name, type_=authorizations.c[name].type) for name in NEW_COLUMNS}


# A free row (test numbers, repeats): getInfo's `balance` is the balance at its creation.
INSERT = Hot(
    insert(authorizations)
    .values(
        **_new_values(),
        balance_before=select(accounts.c.balance)
        .where(accounts.c.id == bindparam("account_id", type_=BigInteger))
        .scalar_subquery(),
    )
    .returning(*authorizations.c)
)

# SQLite, a paid row: the balance was just taken in the same transaction.
_INSERT_PRICED = (
    insert(authorizations)
    .values(**_new_values(), balance_before=bindparam("balance_before", type_=BigInteger))
    .returning(*authorizations.c)
)


def _insert_charged() -> Hot:
    """PostgreSQL: take the price, write the authorization and its ledger row in one
    statement, hence one implicit transaction and one round trip. No row comes back when the
    balance does not cover the price; then nothing was written."""
    cost = bindparam("cost", type_=BigInteger)
    now = bindparam("created_at", type_=Float)
    taken = (
        update_(accounts)
        .where(
            accounts.c.id == bindparam("account_id", type_=BigInteger),
            accounts.c.balance >= cost,
        )
        .values(balance=accounts.c.balance - cost, updated_at=now)
        .returning(accounts.c.balance)
        .cte("taken")
    )
    values = _new_values()
    row = select(*values.values(), (taken.c.balance + cost).label("balance_before"))
    new = (
        insert(authorizations)
        .from_select([*values, "balance_before"], row.select_from(taken))
        .returning(*authorizations.c)
        .cte("new")
    )
    entry = insert(ledger).from_select(
        billing.LEDGER_COLUMNS,
        select(
            new.c.account_id,
            literal("charge"),
            -new.c.cost,
            new.c.balance_before - new.c.cost,
            new.c.id,
            new.c.kind,
            literal("system"),
            billing.charge_reason_sql(new.c.kind, new.c.id),
            new.c.created_at,
        ).select_from(new),
    )
    return Hot(select(new).add_cte(entry.cte("entry")))


INSERT_CHARGED = _insert_charged()


def insert_row(conn: Connection, values: dict[str, Any]) -> Authorization | None:
    """The row, its charge and its ledger row; None (and nothing written) if the balance
    does not cover the price."""
    cost = values["cost"]
    if cost <= 0:
        return Authorization.from_row(rows(conn, INSERT.clause, values)[0])
    if conn.dialect.name == "postgresql":
        # As compiled for asyncpg: run through SQLAlchemy, the parameters named like columns
        # of ``accounts`` would be added to the UPDATE in the statement's CTE.
        hot = INSERT_CHARGED
        found = conn.exec_driver_sql(hot.sql, tuple(hot.args(values))).first()
        return None if found is None else Authorization.from_row(found)
    after = billing.take(conn, values["account_id"], cost, now=values["created_at"])
    if after is None:
        return None
    params = {**values, "balance_before": after + cost}
    row = Authorization.from_row(rows(conn, _INSERT_PRICED, params)[0])
    billing.record_charge(
        conn,
        row.account_id,
        cost,
        after,
        now=row.created_at,
        authorization_id=row.id,
        channel=row.kind,
    )
    return row


def write(conn: Connection, request: Request) -> Outcome:
    """One request in the open transaction ``conn``. A refusal is returned, not raised, and
    leaves nothing written; what is raised is a failure of the transaction."""
    values = request.values
    service_id, unique, now = values["service_id"], values["unique_key"], values["created_at"]
    if unique is not None:
        lock(conn, "unique", f"{service_id}:{unique}")
        row = first(conn, BY_UNIQUE.clause, {"service_id": service_id, "unique": unique})
        if row is not None:
            return Created(Authorization.from_row(row), new=False)
    if request.counted:
        try:
            limits.count(conn, service_id, request.hourly_limit, request.phone, now)
        except UcallerError as refused:
            return refused
    new = insert_row(conn, values)
    if new is None:
        return UcallerError(Code.LOW_BALANCE)
    return Created(new, new=True)


def _write_all(conn: Connection, batch: list[Request]) -> list[Outcome]:
    return [write(conn, request) for request in batch]


class NewAuthorizations:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._batches: Batcher[Request, Outcome]
        if db.sqlite:
            writer = db.sqlite_writer()

            async def sqlite_together(batch: list[Request]) -> list[Outcome]:
                return await writer.transaction(_write_all, batch)

            async def sqlite_alone(request: Request) -> Outcome:
                return await writer.transaction(write, request)

            self._batches = Batcher(OPERATION, together=sqlite_together, alone=sqlite_alone)
        else:

            async def pg_together(batch: list[Request]) -> list[Outcome]:
                rows = await write_many(db, [r.values for r in batch])
                outcomes: list[Outcome] = []
                for request, row in zip(batch, rows, strict=True):
                    if row is None:  # its account's share was not covered: in arrival order
                        outcomes.append(await self._pg_alone(request))
                    else:
                        outcomes.append(Created(Authorization.from_row(row), new=True))
                return outcomes

            self._batches = Batcher(OPERATION, together=pg_together, alone=self._pg_alone)

    async def create(self, request: Request) -> Outcome:
        """Written and committed, or refused. Raises what the database raised (on
        PostgreSQL with limits in Redis, a duplicate ``unique``: storage/conflicts.py)."""
        if self.db.sqlite or not request.counted:
            return await self._batches.submit(request)
        async with self.db.write() as conn:
            return await conn.run_sync(write, request)

    async def create_in(self, conn: AsyncConnection, request: Request) -> Outcome:
        """Within the caller's open write transaction (initRepeat's)."""
        return await conn.run_sync(write, request)

    async def _pg_alone(self, request: Request) -> Outcome:
        """PostgreSQL without counting: one statement, its own implicit transaction."""
        values = request.values
        hot = INSERT_CHARGED if values["cost"] > 0 else INSERT
        row = await self.db.write_one(hot, values)
        if row is None:
            return UcallerError(Code.LOW_BALANCE)
        return Created(Authorization.from_row(row), new=True)
