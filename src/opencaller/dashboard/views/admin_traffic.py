"""Operator: traffic and errors across the installation."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...storage.tables import accounts, authorizations, services
from .. import data, fmt
from ..charts import Series, bar_chart, legend
from ..web import Ctx, Dash, page
from .stats import RANGES, day_range

a = authorizations.c
# Outcomes grouped for the chart; anything else (busy, rejected, …) counts as a failure.
GOOD = ("delivered", "answered")
CSS = {"ok": "s-ok", "failed": "s-bad", "pending": "s-wait", "test": "s-test"}


async def traffic(ctx: Ctx) -> Response:
    days, numbers, since, until = day_range(ctx)
    d = data.day_of(a.created_at, ctx.rt.db.sqlite).label("d")
    async with ctx.rt.db.read() as conn:
        by_outcome = (
            await conn.execute(
                select(d, a.outcome, a.is_test, func.count().label("n"))
                .where(a.created_at >= since, a.created_at < until)
                .group_by(d, a.outcome, a.is_test)
            )
        ).all()
        top = await data.counts_by_service(conn, since, until, account_id=None, limit=10)
        owners = dict(
            (
                await conn.execute(
                    select(services.c.id, accounts.c.email)
                    .join(accounts, accounts.c.id == services.c.account_id)
                    .where(services.c.id.in_([c.key for c in top]))
                )
            ).all()
        )
        totals = (
            await conn.execute(
                select(func.count(), func.sum(accounts.c.balance)).select_from(accounts)
            )
        ).one()
    per_day = {k: {n: 0 for n in numbers} for k in CSS}
    outcomes: dict[str, int] = {}
    for r in by_outcome:
        group = (
            "test"
            if r.is_test
            else "pending"
            if r.outcome is None
            else "ok"
            if r.outcome in GOOD
            else "failed"
        )
        if int(r.d) in per_day[group]:
            per_day[group][int(r.d)] += r.n
        if not r.is_test and r.outcome is not None:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + r.n
    names = {
        "ok": ctx.t("Reached"),
        "failed": ctx.t("Failed"),
        "pending": ctx.t("In progress"),
        "test": ctx.t("Test"),
    }
    series = [Series(names[k], [per_day[k][n] for n in numbers], CSS[k]) for k in CSS]
    labels = [fmt.day(n * data.DAY_S) for n in numbers]
    return ctx.render(
        "admin/traffic.html",
        days=days,
        ranges=RANGES,
        chart=bar_chart(labels, series, title=ctx.t("Authorizations per day by outcome")),
        chart_legend=legend(series),
        outcomes=sorted(outcomes.items(), key=lambda kv: -kv[1]),
        outcome_total=sum(outcomes.values()),
        top=top,
        owners=owners,
        account_count=totals[0],
        balance_total=int(totals[1] or 0),
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [
        Route("/admin", page(dash, traffic, admin=True)),
        Route("/admin/", page(dash, traffic, admin=True)),
    ]
