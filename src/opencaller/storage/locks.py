"""Advisory locks of PostgreSQL, for transactions written as synchronous SQLAlchemy code.

``Database.lock`` takes the same locks in async code: both derive the key here, so a
transaction of either kind queues behind the other on the same (kind, key).
"""

from __future__ import annotations

import zlib

from sqlalchemy import Connection, text

_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


def lock_key(kind: str, key: str | int) -> int:
    return zlib.crc32(f"{kind}:{key}".encode())


def lock(conn: Connection, kind: str, key: str | int) -> None:
    """Serialise transactions that touch the same (kind, key) until commit or rollback. On
    SQLite nothing: ``BEGIN IMMEDIATE`` already holds the only write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"k": lock_key(kind, key)})
