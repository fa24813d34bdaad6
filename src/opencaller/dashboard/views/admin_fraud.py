"""Operator: refused attempts across the installation, blocks in force, lifting one."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain.fraud import permissions, reports
from ..web import Ctx, Dash, NotFound, int_param, page

DAYS = 7
DAY_S = 86_400.0


async def overview(ctx: Ctx) -> Response:
    now = ctx.now()
    return ctx.render(
        "admin/fraud.html",
        attempts=await reports.attempts(ctx.rt.db, service_ids=None, since=now - DAYS * DAY_S),
        blocks=await reports.blocks(ctx.rt.db, now=now),
        days=DAYS,
    )


async def lift(ctx: Ctx) -> Response:
    block_id = int_param(ctx.request.path_params.get("bid"))
    done = await ctx.rt.fraud.journal.lift(block_id, by=ctx.me.email, now=ctx.now())
    if not done:
        raise NotFound
    await ctx.log(f"fraud block lifted: #{block_id}")
    ctx.flash("Block lifted.")
    return ctx.redirect("/admin/fraud")


async def open_countries(ctx: Ctx) -> Response:
    raw = ctx.field("service_id").strip()
    sid = int_param(raw or None)
    current = await permissions.settings_of(ctx.rt.db, sid)
    if current is None or sid is None:
        raise NotFound
    countries = [c for c in ctx.field("open_countries").replace(",", " ").split() if c]
    await permissions.change(
        ctx.rt.db,
        sid,
        countries=[*current.open_countries, *countries],
        restricted=current.geo_restricted,
        channel=current.channel,
    )
    ctx.rt.auth.forget(sid)
    await ctx.log(f"countries opened for service #{sid}: {' '.join(countries)}")
    ctx.flash("Settings saved.")
    return ctx.redirect("/admin/fraud")


def routes(dash: Dash) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/admin/fraud", page(dash, overview, admin=True)),
        Route("/admin/fraud/blocks/{bid}/lift", page(dash, lift, admin=True), methods=post),
        Route("/admin/fraud/countries", page(dash, open_countries, admin=True), methods=post),
    ]
