"""Verification conversion, read for the dashboard: verified ÷ initiated, grouped.

Initiated counts a chain of free repeats once (its original), as the chain shares one code and
one verification; TEST numbers are left out. An authorization is verified when verifyCode took
its code or its inbound call came (``verified_at``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ..storage.tables import authorizations, services
from .reports import day_of

a = authorizations.c
# Operators are told by the number block (country code and a 7-digit block), one lookup a block.
PREFIX_DIGITS = 8


@dataclass(frozen=True, slots=True)
class Conversion:
    label: str
    key: int
    initiated: int
    verified: int

    @property
    def rate(self) -> float | None:
        return self.verified / self.initiated if self.initiated else None


@dataclass(frozen=True, slots=True)
class Grouped:
    """Conversion of one account over a range, by each grouping the page shows."""

    by_day: list[Conversion]  # label: the UTC day number
    by_service: list[Conversion]
    by_channel: list[Conversion]
    by_country: list[Conversion]
    by_block: list[Conversion]  # label: the number block's first PREFIX_DIGITS digits


def _channel() -> ColumnElement[Any]:
    return case((a.direction == "in", "inbound"), else_=a.kind)


async def _grouped(
    conn: AsyncConnection,
    group: ColumnElement[Any],
    since: float,
    until: float,
    account_id: int,
    service_id: int | None,
    *,
    named: bool = False,
    limit: int = 300,
) -> list[Conversion]:
    g = group.label("g")
    cond = [
        a.account_id == account_id,
        a.created_at >= since,
        a.created_at < until,
        a.first_id.is_(None),
        a.is_test.is_(False),
    ]
    if service_id is not None:
        cond.append(a.service_id == service_id)
    columns = [
        g,
        func.count().label("initiated"),
        func.count(a.verified_at).label("verified"),
    ]
    q = select(*columns).where(*cond)
    if named:  # by service: its name beside its id
        q = q.add_columns(services.c.name).join(services, services.c.id == a.service_id)
        q = q.group_by(g, services.c.name)
    else:
        q = q.group_by(g)
    rows = (await conn.execute(q.order_by(func.count().desc()).limit(limit))).all()
    out = []
    for r in rows:
        label = f"#{r.g} {r.name}" if named else str(r.g if r.g is not None else "")
        key = int(r.g) if named or isinstance(r.g, int) else 0
        out.append(Conversion(label, key, int(r.initiated), int(r.verified or 0)))
    return out


async def conversion(
    conn: AsyncConnection,
    sqlite: bool,
    since: float,
    until: float,
    *,
    account_id: int,
    service_id: int | None,
) -> Grouped:
    """The account's conversion from ``since`` to ``until``, optionally of one service."""
    me = account_id

    async def grouped(group: ColumnElement[Any], named: bool = False) -> list[Conversion]:
        return await _grouped(conn, group, since, until, me, service_id, named=named)

    return Grouped(
        by_day=await grouped(day_of(a.created_at, sqlite)),
        by_service=await grouped(a.service_id, named=True),
        by_channel=await grouped(_channel()),
        by_country=await grouped(a.country_iso),
        by_block=await grouped(func.substr(a.phone, 1, PREFIX_DIGITS)),
    )
