"""The Database handle: transactions that serialise writers correctly on each engine.

- PostgreSQL: ordinary READ COMMITTED transactions; rules that count rows take transaction-scoped
  advisory locks (``lock``) so that racing requests on any node queue up per phone/service.
- SQLite: writers open ``BEGIN IMMEDIATE``, taking the database write lock at the start, so a
  read-check-write sequence cannot interleave with another writer, in this or another process.
  Readers use a separate engine with ordinary deferred transactions.

One pool per process: SQLAlchemy's (storage/db.py sets its size and timeouts). Hot statements
(storage/hot.py) run on the asyncpg connection under one of its pooled connections, so they
share its bounds. Never run one while the same task holds a connection from ``write`` or
``read``: with every connection held by a task waiting for a second, all would wait until the
acquire timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db import DbTimeouts, create_engine, is_sqlite
from .hot import Hot
from .locks import lock_key
from .outage import is_unavailable
from .sqlite_writer import SqliteWriter, run_hot

Row = Mapping[str, Any]


def _immediate(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(
        self, url: str, *, pool_size: int = 10, timeouts: DbTimeouts | None = None
    ) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.pool_size = pool_size
        self.timeouts = timeouts or DbTimeouts()
        self.reader: AsyncEngine = create_engine(url, pool_size=pool_size, timeouts=timeouts)
        # SQLite has one writer at a time. Queueing this process's writers on a lock keeps them
        # out of SQLite's busy handler, which sleeps up to 100 ms between retries.
        self._write_lock: asyncio.Lock | None = None
        if self.sqlite:
            self.writer = create_engine(url)
            _immediate(self.writer)
            self._write_lock = asyncio.Lock()
            self._snapshot_free = create_engine(url, autocommit=True)
        else:
            self.writer = self.reader
            self._snapshot_free = self.reader.execution_options(isolation_level="AUTOCOMMIT")
        self._sqlite_writer: SqliteWriter | None = None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.writer.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.writer.begin() as conn:
            yield conn

    def sqlite_writer(self) -> SqliteWriter:
        """SQLite: write transactions that run in one thread hop (storage/sqlite_writer.py),
        taking their turn with ``write()``."""
        assert self._write_lock is not None, "SQLite only"
        if self._sqlite_writer is None:
            self._sqlite_writer = SqliteWriter(self.url, self._write_lock)
        return self._sqlite_writer

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads outside any transaction: no BEGIN and no ROLLBACK round
        trips. Each statement sees the data committed when it starts."""
        async with self._snapshot_free.connect() as conn:
            yield conn

    # -- hot statements (storage/hot.py) ----------------------------------------------------

    async def fetch_all(self, hot: Hot, params: Mapping[str, Any]) -> list[Row]:
        """The rows of a hot read, outside any transaction (each statement sees what was
        committed when it starts). Writes go through ``write_all``/``write_one``."""
        return await self._hot(hot, params, write=False)

    async def fetch_one(self, hot: Hot, params: Mapping[str, Any]) -> Row | None:
        rows = await self._hot(hot, params, write=False)
        return rows[0] if rows else None

    async def write_all(self, hot: Hot, params: Mapping[str, Any]) -> list[Row]:
        """A hot write committed on its own: on PostgreSQL one round trip (its implicit
        transaction), on SQLite a write transaction in this process's writer queue."""
        return await self._hot(hot, params, write=True)

    async def write_one(self, hot: Hot, params: Mapping[str, Any]) -> Row | None:
        rows = await self._hot(hot, params, write=True)
        return rows[0] if rows else None

    async def pg_fetch(self, sql: str, *args: Any) -> list[Row]:
        """A statement written for PostgreSQL only (callers check ``sqlite`` first), run on
        the asyncpg connection under one of the engine's pooled connections: one pool per
        process, with its size and acquire timeout, and asyncpg's statement cache and
        command timeout. No transaction is begun, so the statement commits on its own and
        the connection goes back with nothing to roll back."""
        assert not self.sqlite
        pooled = await self.reader.raw_connection()
        try:
            driver: asyncpg.Connection = pooled.driver_connection
            records: list[Row] = await driver.fetch(sql, *args)
        except BaseException as exc:
            # A statement that timed out, was cancelled or lost its server leaves the
            # connection mid-operation: the pool closes it and opens a fresh one rather
            # than handing this one out ("another operation is in progress").
            if isinstance(exc, asyncio.CancelledError) or is_unavailable(exc):
                pooled.invalidate(exc if isinstance(exc, Exception) else None)
            raise
        finally:
            pooled.close()
        return records

    async def _hot(self, hot: Hot, params: Mapping[str, Any], *, write: bool) -> list[Row]:
        if not self.sqlite:
            return await self.pg_fetch(hot.sql, *hot.args(params))
        if write:  # one thread hop for the whole transaction (storage/sqlite_writer.py)
            return await self.sqlite_writer().transaction(run_hot, hot, params)
        async with self.read() as conn:
            rows = (await conn.execute(hot.clause, dict(params))).all()
        return [cast(Row, r._mapping) for r in rows]

    async def lock(self, conn: AsyncConnection, kind: str, key: str | int) -> None:
        """Serialise transactions that touch the same (kind, key) until commit or rollback."""
        if self.sqlite:
            return  # BEGIN IMMEDIATE already holds the only write lock
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(kind, key)})

    async def ping(self) -> bool:
        try:
            async with self.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
        await self.reader.dispose()
        if self.sqlite:
            await self._snapshot_free.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()
