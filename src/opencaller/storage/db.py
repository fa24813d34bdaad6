"""Engines and migrations. One URL picks the engine; the code above this module is the same."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs and pick the async driver."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue, not fail.
    # busy_timeout first: switching a new file to WAL needs a moment of exclusive access,
    # and a connection opened at the same time must wait for it rather than fail.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(url: str, *, pool_size: int = 10, autocommit: bool = False) -> AsyncEngine:
    url = async_url(url)
    if is_sqlite(url):
        # Autocommit readers skip the rollback SQLAlchemy would send on every return to the
        # pool; each is a hop to aiosqlite's thread.
        extra: dict[str, Any] = (
            {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None} if autocommit else {}
        )
        engine = create_async_engine(url, **extra)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection the server dropped
    # fails one statement, is discarded, and recycling retires connections before idle limits.
    # No overflow: a burst waits for a connection rather than exhausting max_connections.
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_recycle=1800)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database to the newest schema (all heads). Safe to run on every start."""
    command.upgrade(alembic_config(url), "heads")
    if is_sqlite(url):
        _wal(url)


def _wal(url: str) -> None:
    """Put a SQLite file in WAL mode once, while nothing else has it open: the mode is kept
    in the file, so connections opened later never race to switch it."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


async def migrate_async(url: str) -> None:
    await asyncio.to_thread(migrate, url)


def make_url_dir(url: str) -> None:
    """Create the folder of a SQLite file so the default ./var/opencaller.db just works."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
