"""Operator: tariffs — create, rename, prices per channel and country."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import billing
from ...storage.tables import accounts, tariff_prices, tariffs
from .. import fmt
from ..web import Ctx, Dash, NotFound, int_param, page

CODE = re.compile(r"^[a-z0-9_-]{1,32}$")


async def tariffs_list(
    ctx: Ctx, errors: list[str] | None = None, status: int = 200, form: dict[str, str] | None = None
) -> Response:
    async with ctx.rt.db.read() as conn:
        users = func.count(accounts.c.id).label("users")
        rows = (
            await conn.execute(
                select(tariffs, users)
                .outerjoin(accounts, accounts.c.tariff_id == tariffs.c.id)
                .group_by(*tariffs.c)
                .order_by(tariffs.c.id)
            )
        ).all()
    return ctx.render(
        "admin/tariffs.html",
        status=status,
        rows=rows,
        errors=errors or [],
        form=form or {"code": "", "name": ""},
    )


async def show_list(ctx: Ctx) -> Response:
    return await tariffs_list(ctx)


async def create(ctx: Ctx) -> Response:
    code, name = ctx.field("code").lower(), ctx.field("name")
    errors = []
    if not CODE.match(code):
        errors.append("The code is 1–32 characters: a-z, 0-9, '-' or '_'.")
    if not name or len(name) > 128:
        errors.append("Give the tariff a name (up to 128 characters).")
    async with ctx.rt.db.write() as conn:
        exists = (await conn.execute(select(tariffs.c.id).where(tariffs.c.code == code))).scalar()
        if exists is not None:
            errors.append("A tariff with this code exists already.")
        if errors:
            return await tariffs_list(ctx, errors, 400, {"code": code, "name": name})
        tid = (
            await conn.execute(
                insert(tariffs)
                .values(code=code, name=name, created_at=ctx.now())
                .returning(tariffs.c.id)
            )
        ).scalar_one()
        for channel in billing.CHANNELS:  # start from the default prices; edit them next
            default = await billing.price_of(conn, await _default_id(conn), channel, "*")
            await billing.set_price(conn, int(tid), channel, "*", default)
    await ctx.log(f"tariff created: {code}")
    ctx.flash("Tariff created.")
    return ctx.redirect(f"/admin/tariffs/{tid}")


async def _default_id(conn: Any) -> int | None:
    q = select(tariffs.c.id).where(tariffs.c.code == billing.DEFAULT_TARIFF[0])
    found = (await conn.execute(q)).scalar()
    return int(found) if found is not None else None


async def tariff_page(ctx: Ctx, errors: list[str] | None = None, status: int = 200) -> Response:
    tid = int_param(ctx.request.path_params.get("tid"))
    async with ctx.rt.db.read() as conn:
        tariff = (await conn.execute(select(tariffs).where(tariffs.c.id == tid))).first()
        if tariff is None:
            raise NotFound
        prices = (
            await conn.execute(
                select(tariff_prices)
                .where(tariff_prices.c.tariff_id == tid)
                .order_by(
                    tariff_prices.c.country_iso != "*",
                    tariff_prices.c.country_iso,
                    tariff_prices.c.channel,
                )
            )
        ).all()
    return ctx.render(
        "admin/tariff.html",
        status=status,
        tariff=tariff,
        prices=prices,
        channels=billing.CHANNELS,
        errors=errors or [],
    )


async def show(ctx: Ctx) -> Response:
    return await tariff_page(ctx)


async def rename(ctx: Ctx) -> Response:
    tid = int_param(ctx.request.path_params.get("tid"))
    name = ctx.field("name")
    if not name or len(name) > 128:
        return await tariff_page(ctx, ["Give the tariff a name (up to 128 characters)."], 400)
    async with ctx.rt.db.write() as conn:
        done = await conn.execute(update(tariffs).where(tariffs.c.id == tid).values(name=name))
    if done.rowcount == 0:
        raise NotFound
    ctx.flash("Saved.")
    return ctx.redirect(f"/admin/tariffs/{tid}")


async def set_price(ctx: Ctx) -> Response:
    tid = int_param(ctx.request.path_params.get("tid"))
    channel = ctx.field("channel")
    country = ctx.field("country").upper() or "*"
    price = fmt.parse_rub(ctx.field("price"))
    errors = []
    if channel not in billing.CHANNELS:
        errors.append("Unknown channel.")
    if country != "*" and not fmt.parse_countries(country)[0]:
        errors.append("Unknown country code.")
    if price is None or price < 0:
        errors.append("The price is a number of roubles, zero or more.")
    if errors or price is None:
        return await tariff_page(ctx, errors, 400)
    async with ctx.rt.db.write() as conn:
        if (await conn.execute(select(tariffs.c.id).where(tariffs.c.id == tid))).first() is None:
            raise NotFound
        if ctx.field("remove") == "1" and country != "*":
            await conn.execute(
                delete(tariff_prices).where(
                    tariff_prices.c.tariff_id == tid,
                    tariff_prices.c.channel == channel,
                    tariff_prices.c.country_iso == country,
                )
            )
        else:
            await billing.set_price(conn, tid, channel, country, price)
    await ctx.log(f"tariff price set: #{tid} {channel} {country} {fmt.rub_plain(price)}")
    ctx.flash("Price saved.")
    return ctx.redirect(f"/admin/tariffs/{tid}")


def routes(dash: Dash) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/admin/tariffs", page(dash, show_list, admin=True)),
        Route("/admin/tariffs/new", page(dash, create, admin=True), methods=post),
        Route("/admin/tariffs/{tid}", page(dash, show, admin=True)),
        Route("/admin/tariffs/{tid}/name", page(dash, rename, admin=True), methods=post),
        Route("/admin/tariffs/{tid}/prices", page(dash, set_price, admin=True), methods=post),
    ]
