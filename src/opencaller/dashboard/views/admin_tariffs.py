"""Operator: tariffs — create, rename, prices per channel and country."""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import billing, tariffs
from .. import fmt
from ..web import Ctx, Dash, NotFound, int_param, page

CODE = re.compile(r"^[a-z0-9_-]{1,32}$")


async def tariffs_list(
    ctx: Ctx, errors: list[str] | None = None, status: int = 200, form: dict[str, str] | None = None
) -> Response:
    async with ctx.rt.db.read() as conn:
        rows = await tariffs.with_users(conn)
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
        if await tariffs.id_of(conn, code) is not None:
            errors.append("A tariff with this code exists already.")
        tid = None if errors else await tariffs.create(conn, code, name, now=ctx.now())
    if tid is None:
        return await tariffs_list(ctx, errors, 400, {"code": code, "name": name})
    await ctx.log(f"tariff created: {code}")
    ctx.flash("Tariff created.")
    return ctx.redirect(f"/admin/tariffs/{tid}")


async def tariff_page(ctx: Ctx, errors: list[str] | None = None, status: int = 200) -> Response:
    tid = int_param(ctx.request.path_params.get("tid"))
    async with ctx.rt.db.read() as conn:
        tariff = await tariffs.get(conn, tid)
        if tariff is None:
            raise NotFound
        prices = await tariffs.prices(conn, tid, defaults_first=True)
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
        found = await tariffs.rename(conn, tid, name)
    if not found:
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
        if await tariffs.get(conn, tid) is None:
            raise NotFound
        if ctx.field("remove") == "1" and country != "*":
            await tariffs.remove_price(conn, tid, channel, country)
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
