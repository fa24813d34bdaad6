"""Engines and migrations. One URL picks the engine; the code above this module is the same."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.engine import make_url as _sa_make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .outage import is_unavailable

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True, slots=True)
class DbTimeouts:
    """How long a process waits on PostgreSQL before it gives up (None: no limit).

    ``connect_s`` bounds opening a connection, ``statement_s`` one statement (asyncpg's
    command timeout, enforced by the client, so a frozen server cannot hold a request), and
    ``acquire_s`` the wait for a free connection of a pool."""

    connect_s: float | None = None
    statement_s: float | None = None
    acquire_s: float | None = None


def make_url(url: str | URL) -> URL:
    """SQLAlchemy's URL, also for libpq's multi-host form
    ``postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write``: the hosts become
    repeated ``host`` query parameters, the form SQLAlchemy's asyncpg dialect hands to
    asyncpg as a list of hosts."""
    if isinstance(url, URL):
        return url
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return _sa_make_url(url)
    query = [("host", h) for h in hosts.split(",") if h]
    netloc = f"{userinfo}@" if userinfo else ""
    extra = urlencode(query, safe=":[]")
    merged = f"{parts.query}&{extra}" if parts.query else extra
    return _sa_make_url(urlunsplit((parts.scheme, netloc, parts.path, merged, "")))


def asyncpg_dsn(url: str | URL) -> str:
    """The URL as asyncpg reads it (libpq syntax, several hosts in the netloc)."""
    u = make_url(url).set(drivername="postgresql")
    hosts = u.query.get("host")
    if not isinstance(hosts, tuple):
        return u.render_as_string(hide_password=False)
    query = {k: v for k, v in u.query.items() if k != "host"}
    userinfo = ""
    if u.username:
        userinfo = quote(u.username, safe="")
        if u.password is not None:
            userinfo += ":" + quote(str(u.password), safe="")
        userinfo += "@"
    pairs = [(k, x) for k, v in query.items() for x in (v if isinstance(v, tuple) else (v,))]
    return urlunsplit(
        ("postgresql", userinfo + ",".join(hosts), "/" + (u.database or ""), urlencode(pairs), "")
    )


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


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    autocommit: bool = False,
    timeouts: DbTimeouts | None = None,
) -> AsyncEngine:
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
    # No pre-ping: it costs a round trip on every checkout. A connection the server closed is
    # replaced at checkout (_skip_closed); one broken otherwise (timeout, lost mid-statement)
    # fails its statement and is discarded (_discard_broken); recycling retires the rest
    # before idle limits.
    # No overflow: a burst waits for a connection rather than exhausting max_connections.
    t = timeouts or DbTimeouts()
    connect_args: dict[str, Any] = {}
    if t.connect_s is not None:
        connect_args["timeout"] = t.connect_s
    if t.statement_s is not None:
        connect_args["command_timeout"] = t.statement_s
    extra = {"pool_timeout": t.acquire_s} if t.acquire_s is not None else {}
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        connect_args=connect_args,
        **extra,
    )
    event.listen(engine.sync_engine, "checkout", _skip_closed)
    event.listen(engine.sync_engine, "handle_error", _discard_broken)
    return engine


def _skip_closed(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """A pooled connection the server has closed (restart, failover, idle kill) is replaced
    at checkout, so the first request after an outage does not fail on it. asyncpg knows
    without a round trip: the server's goodbye already arrived on the socket."""
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise sa_exc.DisconnectionError("connection closed by the server")


def _discard_broken(context: Any) -> None:
    """A statement that timed out or lost its server leaves its connection in an unknown
    state (a frozen server may still owe the answer): SQLAlchemy then discards it instead of
    handing it to the next request. A lost server also retires every connection the pool
    opened before; a timeout only this one (the server may just be slow on one query)."""
    if context.is_disconnect or not is_unavailable(context.original_exception):
        return
    context.is_disconnect = True
    if isinstance(context.original_exception, TimeoutError):
        context.invalidate_pool_on_disconnect = False


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
