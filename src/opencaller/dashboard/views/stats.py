"""Statistics: authorizations per day and per service, conversion, spend per day."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import data, fmt
from ..charts import Series, bar_chart, legend
from ..web import Ctx, Dash, NotFound, int_param, page

RANGES = (7, 30, 90)


def day_range(ctx: Ctx) -> tuple[int, list[int], float, float]:
    """The chosen number of days and their UTC day numbers, oldest first, up to today."""
    days = fmt.parse_int(ctx.arg("days"), low=1, high=366) or 30
    today = int(ctx.now() // data.DAY_S)
    numbers = list(range(today - days + 1, today + 1))
    return days, numbers, numbers[0] * data.DAY_S, (today + 1) * data.DAY_S


async def stats(ctx: Ctx) -> Response:
    days, numbers, since, until = day_range(ctx)
    service_id = int_param(ctx.arg("service")) if ctx.arg("service") else None
    sqlite = ctx.rt.db.sqlite
    async with ctx.rt.db.read() as conn:
        services = await data.account_services(conn, ctx.me.id)
        if service_id is not None and service_id not in {s.id for s in services}:
            raise NotFound
        by_day = await data.counts_by_day(
            conn, sqlite, since, until, account_id=ctx.me.id, service_id=service_id
        )
        by_service = await data.counts_by_service(conn, since, until, account_id=ctx.me.id)
        spend = await data.spend_by_day(conn, sqlite, ctx.me.id, since, until)
    labels = [fmt.day(d * data.DAY_S) for d in numbers]
    rows = [by_day.get(d) or data.Counts("", d, 0, 0, 0, 0, 0) for d in numbers]
    rows = [
        data.Counts(label, r.key, r.started, r.reached, r.not_reached, r.pending, r.tests)
        for label, r in zip(labels, rows, strict=True)
    ]
    calls = [
        Series(ctx.t("Reached"), [r.reached for r in rows], "s-ok"),
        Series(ctx.t("Not reached"), [r.not_reached for r in rows], "s-bad"),
        Series(ctx.t("In progress"), [r.pending for r in rows], "s-wait"),
        Series(ctx.t("Test"), [r.tests for r in rows], "s-test"),
    ]
    money = [Series(ctx.t("Spent"), [spend.get(d, 0) / 10_000 for d in numbers], "s-money")]
    total = data.Counts(
        ctx.t("Total"),
        0,
        sum(r.started for r in rows),
        sum(r.reached for r in rows),
        sum(r.not_reached for r in rows),
        sum(r.pending for r in rows),
        sum(r.tests for r in rows),
    )
    if service_id is not None:
        by_service = [c for c in by_service if c.key == service_id]
    return ctx.render(
        "stats.html",
        days=days,
        ranges=RANGES,
        services=services,
        service_id=service_id,
        rows=list(reversed(rows)),
        total=total,
        by_service=by_service,
        spent=sum(spend.values()),
        calls_chart=bar_chart(labels, calls, title=ctx.t("Authorizations per day")),
        calls_legend=legend(calls),
        money_chart=bar_chart(labels, money, title=ctx.t("Spend per day"), unit=" ₽"),
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [Route("/dashboard/stats", page(dash, stats))]
