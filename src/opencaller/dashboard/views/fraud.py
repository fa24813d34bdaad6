"""Customer: refused attempts with their reasons, conversion by channel, fraud settings."""

from __future__ import annotations

from typing import Literal

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import reports as account_reports
from ...domain.fraud import permissions, reports
from ..web import Ctx, Dash, NotFound, int_param, page

DAYS = 7
DAY_S = 86_400.0


async def overview(ctx: Ctx) -> Response:
    async with ctx.rt.db.read() as conn:
        services = await account_reports.account_services(conn, ctx.me.id)
    ids = [s.id for s in services]
    since = ctx.now() - DAYS * DAY_S
    guard = ctx.rt.fraud
    rates = {
        s.id: await reports.channel_rates(
            guard.store, s.id, now=ctx.now(), window_s=guard.policy.window_s
        )
        for s in services
        if not s.archived
    }
    return ctx.render(
        "fraud.html",
        services=services,
        attempts=await reports.attempts(ctx.rt.db, service_ids=ids, since=since),
        reasons=await reports.reasons(ctx.rt.db, service_ids=ids, since=since),
        rates=rates,
        days=DAYS,
        home=sorted(guard.policy.home_countries),
        channels=("request", "auto"),
    )


async def change(ctx: Ctx) -> Response:
    sid = int_param(ctx.request.path_params.get("sid"))
    async with ctx.rt.db.read() as conn:
        service = await account_reports.owned_service(conn, ctx.me.id, sid)
    if service is None:
        raise NotFound
    channel: Literal["request", "auto"] = "auto" if ctx.field("channel") == "auto" else "request"
    countries = [c for c in ctx.field("open_countries").replace(",", " ").split() if c]
    if any(len(c) != 2 or not c.isascii() or not c.isalpha() for c in countries):
        ctx.flash("Countries are two-letter codes, like KZ or UZ.", "error")
        return ctx.redirect("/dashboard/fraud")
    await permissions.change(
        ctx.rt.db,
        sid,
        countries=countries,
        restricted=ctx.field("geo_restricted") == "1",
        channel=channel,
    )
    ctx.rt.auth.forget(sid)  # the API must see the change now, not after its cache
    await ctx.log(f"fraud settings changed: #{sid} {service.name}")
    ctx.flash("Settings saved.")
    return ctx.redirect("/dashboard/fraud")


def routes(dash: Dash) -> list[BaseRoute]:
    return [
        Route("/dashboard/fraud", page(dash, overview)),
        Route("/dashboard/fraud/{sid}", page(dash, change), methods=["POST"]),
    ]
