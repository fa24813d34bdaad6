"""What the operator does to accounts: find them, see one whole, and change its flags."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..storage.tables import accounts, services, tariffs
from . import web_sessions

PAGE_SIZE = 50


async def search(conn: AsyncConnection, text: str, page: int) -> tuple[list[Any], int]:
    """Accounts whose e-mail or phone contains ``text`` (or whose id it is), newest first,
    each with its ``tariff_name``; one page of them, and how many match in all."""
    cond: list[Any] = []
    if text:
        alts = [
            accounts.c.email.contains(text.lower(), autoescape=True),
            accounts.c.phone.contains(text, autoescape=True),
        ]
        if text.isascii() and text.isdigit() and len(text) <= 18:
            alts.append(accounts.c.id == int(text))
        cond.append(or_(*alts))
    count = select(func.count()).select_from(accounts).where(*cond)
    total = int((await conn.execute(count)).scalar_one())
    q = (
        select(accounts, tariffs.c.name.label("tariff_name"))
        .outerjoin(tariffs, tariffs.c.id == accounts.c.tariff_id)
        .where(*cond)
        .order_by(accounts.c.id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    )
    return list((await conn.execute(q)).all()), total


async def service_rows(conn: AsyncConnection, account_id: int) -> list[Any]:
    q = select(services).where(services.c.account_id == account_id).order_by(services.c.id)
    return list((await conn.execute(q)).all())


async def set_flags(
    conn: AsyncConnection,
    account_id: int,
    *,
    now: float,
    blocked: bool | None = None,
    phone_verified: bool | None = None,
    tariff_id: int | None = None,
) -> list[int]:
    """Change what is given; a blocked account's browsers are signed out at once. Returns the
    account's service ids: the API caches each service with its account, so the caller makes
    it forget them."""
    given = {"blocked": blocked, "phone_verified": phone_verified, "tariff_id": tariff_id}
    values = {k: v for k, v in given.items() if v is not None}
    await conn.execute(
        update(accounts).where(accounts.c.id == account_id).values(updated_at=now, **values)
    )
    if blocked:
        await web_sessions.end_all(conn, account_id)
    q = select(services.c.id).where(services.c.account_id == account_id)
    return [int(sid) for sid in (await conn.execute(q)).scalars().all()]
