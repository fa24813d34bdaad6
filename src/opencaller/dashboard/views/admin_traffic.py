"""Operator: traffic and errors across the installation."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import reports
from .. import fmt
from ..charts import Series, bar_chart, legend
from ..web import Ctx, Dash, page
from .stats import RANGES, day_range

# Outcomes grouped for the chart; anything else (busy, rejected, …) counts as a failure.
GOOD = ("delivered", "answered")
CSS = {"ok": "s-ok", "failed": "s-bad", "pending": "s-wait", "test": "s-test"}


async def traffic(ctx: Ctx) -> Response:
    days, numbers, since, until = day_range(ctx)
    async with ctx.rt.db.read() as conn:
        by_outcome = await reports.outcomes_by_day(conn, ctx.rt.db.sqlite, since, until)
        top = await reports.counts_by_service(conn, since, until, account_id=None, limit=10)
        owners = await reports.service_owners(conn, [c.key for c in top])
        account_count, balance_total = await reports.account_totals(conn)
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
    labels = [fmt.day(n * reports.DAY_S) for n in numbers]
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
        account_count=account_count,
        balance_total=balance_total,
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [
        Route("/admin", page(dash, traffic, admin=True)),
        Route("/admin/", page(dash, traffic, admin=True)),
    ]
