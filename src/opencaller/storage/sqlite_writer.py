"""SQLite writes that run many statements in one thread hop, many transactions in one commit.

Through aiosqlite every statement, the ``BEGIN`` and the ``COMMIT`` is a hop to the driver's
thread and back through the event loop; a write transaction of five statements held SQLite's
only write lock for five round trips of a busy loop (~3 ms), and that capped embedded initCall
near 300/s. Here a whole transaction — a function of a synchronous SQLAlchemy ``Connection`` —
runs in one hop, on a connection this module's own thread keeps open; and the works that queue
while one transaction runs share the next (a group commit), each in a savepoint of its own.

The transaction starts with ``BEGIN IMMEDIATE`` like every other writer (storage/database.py),
so several processes sharing one file still queue for SQLite's write lock; within the process
it takes its turn on the same lock as ``Database.write()``, so the two kinds of writers never
meet in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.pool import StaticPool

from .db import _sqlite_pragmas, make_url
from .hot import Hot
from .statements import rows

T = TypeVar("T")
_Work = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]

log = logging.getLogger(__name__)


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
        self._pending: list[_Work] = []
        self._task: asyncio.Task[None] | None = None

    async def transaction(self, work: Callable[..., T], *args: Any) -> T:
        """``work(conn, *args)`` in a write transaction: its effects are committed if it
        returns, undone if it raises. Works queued while a transaction is in flight share the
        next one, each within a savepoint, so one that raises leaves the others be. ``work``
        runs in the writer thread: it must not touch the event loop, and it may run again
        (alone) if the shared transaction fails as a whole."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((work, args, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        result: T = await future
        return result

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        group: list[_Work] = []
        try:
            while self._pending:
                group, self._pending = self._pending, []
                async with self._turn:
                    done = loop.run_in_executor(self._thread, self._run_group, group)
                    try:
                        outcomes = await asyncio.shield(done)
                    finally:
                        if not done.done():
                            # Cancelled while the transaction runs: keep the turn until it
                            # ends, so no other writer of this process meets it in SQLite's
                            # busy handler.
                            with contextlib.suppress(BaseException):
                                await asyncio.wait([done])
                for (_, _, future), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                group = []
        finally:
            self._task = None
            for _, _, future in group:  # only if this task was cancelled mid-group
                if not future.done():
                    future.set_exception(RuntimeError("the write was cancelled"))

    def _run_group(self, group: list[_Work]) -> list[tuple[bool, Any]]:
        if len(group) == 1:  # alone: no savepoint needed
            work, args, _ = group[0]
            return [self._alone(work, args)]
        try:
            return self._in_one_transaction(group)
        except Exception as exc:
            # BEGIN or COMMIT failed, or the transaction was lost: nothing of it was kept.
            log.warning(
                "shared SQLite transaction failed, writing one by one: %s: %s",
                type(exc).__name__,
                exc,
                extra={"works": len(group)},
            )
            return [self._alone(work, args) for work, args, _ in group]

    def _in_one_transaction(self, group: list[_Work]) -> list[tuple[bool, Any]]:
        conn = self._connection()
        outcomes: list[tuple[bool, Any]] = []
        try:
            with conn.begin():
                for work, args, _ in group:
                    conn.exec_driver_sql("SAVEPOINT work")
                    try:
                        result = work(conn, *args)
                    except Exception as exc:
                        conn.exec_driver_sql("ROLLBACK TO work")
                        conn.exec_driver_sql("RELEASE work")
                        outcomes.append((False, exc))
                        continue
                    conn.exec_driver_sql("RELEASE work")
                    outcomes.append((True, result))
        except BaseException:
            if conn.invalidated or conn.closed:  # a broken connection: open a fresh one
                self._conn = None
            raise
        return outcomes

    def _alone(self, work: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        conn = self._connection()
        try:
            with conn.begin():
                return True, work(conn, *args)
        except Exception as exc:
            if conn.invalidated or conn.closed:
                self._conn = None
            return False, exc

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

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
    return list(rows(conn, hot.clause, params))


def _no_implicit_begin(dbapi_conn: Any, _rec: Any) -> None:
    dbapi_conn.isolation_level = None  # the "begin" listener issues BEGIN IMMEDIATE itself


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
