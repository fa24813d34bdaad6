"""The tariff catalogue as the operator edits it: tariffs, their names and prices per channel
and country. What a call costs is ``billing.price_of``; this module only keeps the table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..storage.tables import accounts, tariff_prices, tariffs
from . import billing

p = tariff_prices.c


async def with_users(conn: AsyncConnection) -> list[Any]:
    """Every tariff, each with ``users``: how many accounts are on it."""
    users = func.count(accounts.c.id).label("users")
    q = (
        select(tariffs, users)
        .outerjoin(accounts, accounts.c.tariff_id == tariffs.c.id)
        .group_by(*tariffs.c)
        .order_by(tariffs.c.id)
    )
    return list((await conn.execute(q)).all())


async def all_tariffs(conn: AsyncConnection) -> list[Any]:
    return list((await conn.execute(select(tariffs).order_by(tariffs.c.id))).all())


async def get(conn: AsyncConnection, tariff_id: int) -> Any:
    """The tariff's row, or None."""
    return (await conn.execute(select(tariffs).where(tariffs.c.id == tariff_id))).first()


async def name_of(conn: AsyncConnection, tariff_id: int) -> str | None:
    q = select(tariffs.c.name).where(tariffs.c.id == tariff_id)
    found = (await conn.execute(q)).scalar()
    return None if found is None else str(found)


async def id_of(conn: AsyncConnection, code: str) -> int | None:
    found = (await conn.execute(select(tariffs.c.id).where(tariffs.c.code == code))).scalar()
    return int(found) if found is not None else None


async def prices(conn: AsyncConnection, tariff_id: int, *, defaults_first: bool) -> list[Any]:
    """The tariff's prices: the defaults (``*``) first then by country, or by channel."""
    order = (
        (p.country_iso != "*", p.country_iso, p.channel)
        if defaults_first
        else (p.channel, p.country_iso)
    )
    q = select(tariff_prices).where(p.tariff_id == tariff_id).order_by(*order)
    return list((await conn.execute(q)).all())


async def create(conn: AsyncConnection, code: str, name: str, *, now: float) -> int:
    """A new tariff, starting from the default tariff's prices (to be edited next)."""
    tid = (
        await conn.execute(
            insert(tariffs).values(code=code, name=name, created_at=now).returning(tariffs.c.id)
        )
    ).scalar_one()
    default_id = await id_of(conn, billing.DEFAULT_TARIFF[0])
    for channel in billing.CHANNELS:
        price = await billing.price_of(conn, default_id, channel, "*")
        await billing.set_price(conn, int(tid), channel, "*", price)
    return int(tid)


async def rename(conn: AsyncConnection, tariff_id: int, name: str) -> bool:
    """False when there is no such tariff."""
    done = await conn.execute(update(tariffs).where(tariffs.c.id == tariff_id).values(name=name))
    return bool(done.rowcount)


async def remove_price(conn: AsyncConnection, tariff_id: int, channel: str, country: str) -> None:
    """Drop a country's own price; the tariff's default (``*``) applies to it again."""
    await conn.execute(
        delete(tariff_prices).where(
            p.tariff_id == tariff_id, p.channel == channel, p.country_iso == country
        )
    )
