"""Values the installation keeps for itself in the database: the secret that signs dashboard
cookies when the settings give none, made on first use and shared by every node."""

from __future__ import annotations

import secrets

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..storage.dashboard_tables import dashboard_kv
from ..storage.database import Database

SESSION_SECRET = "session_secret"


async def session_secret(db: Database, *, now: float) -> str:
    """The stored secret; the first node to ask stores a new one."""
    query = select(dashboard_kv.c.value).where(dashboard_kv.c.key == SESSION_SECRET)
    async with db.read() as conn:
        found = (await conn.execute(query)).scalar()
    if found:
        return str(found)
    try:
        async with db.write() as conn:
            found = (await conn.execute(query)).scalar()
            if found:
                return str(found)
            value = secrets.token_urlsafe(48)
            await conn.execute(
                insert(dashboard_kv).values(key=SESSION_SECRET, value=value, created_at=now)
            )
            return value
    except IntegrityError:  # another node stored one first: use theirs
        async with db.read() as conn:
            return str((await conn.execute(query)).scalar_one())
