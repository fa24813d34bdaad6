"""Signed-in browsers of the dashboard, kept in the database so that they can be ended.

The browser holds a random token; the table keeps only its SHA-256, so a copy of the table
cannot be turned back into cookies. Ending a session deletes its row, and the next request
with that token finds nothing, on every node at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..storage.dashboard_tables import dashboard_sessions as ds

# last_seen_at is rewritten at most this often per session, so pages stay read-only.
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class WebSession:
    id: str  # the stored hash, also the handle a user ends a session by
    account_id: int
    created_at: float
    last_seen_at: float
    ip: str
    user_agent: str
    pending_totp: str | None


def session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start(
    conn: AsyncConnection, account_id: int, *, now: float, ip: str, user_agent: str
) -> str:
    """A new session; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        ds.insert().values(
            id=session_id(token),
            account_id=account_id,
            created_at=now,
            last_seen_at=now,
            ip=ip[:64],
            user_agent=user_agent[:512],
        )
    )
    return token


async def find(
    conn: AsyncConnection, token: str, *, max_age_s: float, now: float
) -> WebSession | None:
    row = (await conn.execute(ds.select().where(ds.c.id == session_id(token)))).first()
    if row is None or row.created_at < now - max_age_s:
        return None
    return WebSession(**row._asdict())


async def touch(conn: AsyncConnection, session: WebSession, *, now: float, ip: str) -> None:
    if now - session.last_seen_at >= TOUCH_EVERY_S or ip[:64] != session.ip:
        await conn.execute(
            update(ds).where(ds.c.id == session.id).values(last_seen_at=now, ip=ip[:64])
        )


async def of_account(conn: AsyncConnection, account_id: int) -> list[WebSession]:
    rows = await conn.execute(
        ds.select().where(ds.c.account_id == account_id).order_by(ds.c.last_seen_at.desc())
    )
    return [WebSession(**r._asdict()) for r in rows]


async def end(conn: AsyncConnection, account_id: int, sid: str) -> bool:
    """End one session of this account (another account's id ends nothing)."""
    result = await conn.execute(delete(ds).where(ds.c.id == sid, ds.c.account_id == account_id))
    return bool(result.rowcount)


async def end_all(conn: AsyncConnection, account_id: int, *, keep: str | None = None) -> int:
    """End every session of the account but ``keep`` (the browser that asked)."""
    query = delete(ds).where(ds.c.account_id == account_id)
    if keep is not None:
        query = query.where(ds.c.id != keep)
    return int((await conn.execute(query)).rowcount or 0)


async def set_pending_totp(conn: AsyncConnection, sid: str, secret: str | None) -> None:
    await conn.execute(update(ds).where(ds.c.id == sid).values(pending_totp=secret))


async def pending_totp(conn: AsyncConnection, sid: str) -> str | None:
    found = (await conn.execute(select(ds.c.pending_totp).where(ds.c.id == sid))).scalar()
    return str(found) if found else None
