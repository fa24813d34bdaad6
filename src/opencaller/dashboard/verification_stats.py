"""Verification conversion on the statistics page: verified ÷ initiated, per day, service,
channel, country and operator.

Initiated counts a chain of free repeats once (its original), as the chain shares one code and
one verification; TEST numbers are left out, like the rest of the page. An authorization is
verified when verifyCode took its code or its inbound call came (``verified_at``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ..numbering import InvalidPhoneNumber
from ..storage.tables import authorizations, services
from . import data, fmt
from .web import Ctx

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
class VerificationStats:
    total: Conversion
    by_day: list[Conversion]  # newest first, days without authorizations left out
    by_service: list[Conversion]
    by_channel: list[Conversion]
    by_country: list[Conversion]
    by_operator: list[Conversion]


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


async def _by_operator(ctx: Ctx, blocks: list[Conversion]) -> list[Conversion]:
    merged: dict[str, tuple[int, int]] = {}
    for block in blocks:
        sample = block.label.ljust(11, "0") if block.label.startswith("7") else block.label
        try:
            info = await ctx.rt.directory.lookup_e164(sample)
            name = info.operator or info.provider or ctx.t("Unknown")
        except InvalidPhoneNumber:
            name = ctx.t("Unknown")
        initiated, verified = merged.get(name, (0, 0))
        merged[name] = (initiated + block.initiated, verified + block.verified)
    out = [Conversion(name, 0, i, v) for name, (i, v) in merged.items()]
    return sorted(out, key=lambda c: -c.initiated)


async def load(ctx: Ctx, since: float, until: float, service_id: int | None) -> VerificationStats:
    """Everything the page's conversion section shows, for the signed-in account."""
    me = ctx.me.id
    sqlite = ctx.rt.db.sqlite
    async with ctx.rt.db.read() as conn:
        days = await _grouped(conn, data.day_of(a.created_at, sqlite), since, until, me, service_id)
        by_service = await _grouped(conn, a.service_id, since, until, me, service_id, named=True)
        by_channel = await _grouped(conn, _channel(), since, until, me, service_id)
        by_country = await _grouped(conn, a.country_iso, since, until, me, service_id)
        prefix = func.substr(a.phone, 1, PREFIX_DIGITS)
        blocks = await _grouped(conn, prefix, since, until, me, service_id)
    by_day = [
        Conversion(fmt.day(int(d.label) * data.DAY_S), int(d.label), d.initiated, d.verified)
        for d in sorted(days, key=lambda d: -int(d.label))
    ]
    total = Conversion(
        ctx.t("Total"),
        0,
        sum(d.initiated for d in days),
        sum(d.verified for d in days),
    )
    return VerificationStats(
        total=total,
        by_day=by_day,
        by_service=by_service,
        by_channel=by_channel,
        by_country=by_country,
        by_operator=await _by_operator(ctx, blocks),
    )
