"""SQLite writes that run many statements in one thread hop.

Through aiosqlite every statement, the ``BEGIN`` and the ``COMMIT`` is a hop to the driver's
thread and back through the event loop; a write transaction of five statements held SQLite's
only write lock for five round trips of a busy loop (~3 ms), and that capped embedded initCall
near 300/s. Here a whole transaction — a function of a synchronous SQLAlchemy ``Connection`` —
runs in one hop, on a connection this module's own thread keeps open.

The transaction starts with ``BEGIN IMMEDIATE`` like every other writer (storage/database.py),
so several processes sharing one file still queue for SQLite's write lock; within the process
it takes its turn on the same lock as ``Database.write()``, so the two kinds of writers never
meet in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.pool import StaticPool

from .db import _sqlite_pragmas, make_url
from .hot import Hot

T = TypeVar("T")


def _sync_url(url: str) -> str:
    return make_url(url).set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)


class SqliteWriter:
    def __init__(self, url: str, turn: asyncio.Lock) -> None:
        self._turn = turn
        # One connection, used by one thread only: the pool hands the same one out each time.
        self._engine: Engine = create_sync_engine(
            _sync_url(url), poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        event.listen(self._engine, "connect", _sqlite_pragmas)
        event.listen(self._engine, "connect", _no_implicit_begin)
        event.listen(self._engine, "begin", _begin_immediate)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: Connection | None = None

    async def transaction(self, work: Callable[..., T], *args: Any) -> T:
        """``work(conn, *args)`` in one write transaction, committed if it returns and rolled
        back if it raises. ``work`` runs in the writer thread: it must not touch the event
        loop."""
        loop = asyncio.get_running_loop()
        async with self._turn:
            done = loop.run_in_executor(self._thread, self._run, work, args)
            try:
                return await asyncio.shield(done)
            finally:
                if not done.done():
                    # Cancelled while the transaction runs: keep the turn until it ends, so
                    # no other writer of this process meets it in SQLite's busy handler.
                    with contextlib.suppress(BaseException):
                        await asyncio.wait([done])

    def _run(self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = self._engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                return work(conn, *args)
        except BaseException:
            if conn.invalidated or conn.closed:  # a broken connection: open a fresh one
                self._conn = None
            raise

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()


def run_hot(conn: Connection, hot: Hot, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A hot statement (storage/hot.py) as a whole transaction: its rows as mappings."""
    rows = conn.execute(hot.clause, dict(params)).all()
    return [cast(Mapping[str, Any], r._mapping) for r in rows]


def _no_implicit_begin(dbapi_conn: Any, _rec: Any) -> None:
    dbapi_conn.isolation_level = None  # the "begin" listener issues BEGIN IMMEDIATE itself


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
