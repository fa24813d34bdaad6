"""Statistics: authorizations per day and per service, conversion per day, country and
operator, spend per day."""

from __future__ import annotations

from sqlalchemy import func
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...numbering import InvalidPhoneNumber
from ...storage.tables import authorizations
from .. import data, fmt, verification_stats
from ..charts import Series, bar_chart, legend
from ..web import Ctx, Dash, NotFound, int_param, page

RANGES = (7, 30, 90)
# Operators are told by the range that holds a number: its first 8 digits (country code and a
# 7-digit block) name the holder closely enough, and one lookup serves a whole block.
PREFIX_DIGITS = 8


async def by_operator(ctx: Ctx, blocks: list[data.Counts]) -> list[data.Counts]:
    """Counts per number block, regrouped by the operator that holds each block."""
    groups: dict[str, list[data.Counts]] = {}
    for block in blocks:
        sample = block.label.ljust(11, "0") if block.label.startswith("7") else block.label
        try:
            info = await ctx.rt.directory.lookup_e164(sample)
            name = info.operator or info.provider or ctx.t("Unknown")
        except InvalidPhoneNumber:
            name = ctx.t("Unknown")
        groups.setdefault(name, []).append(block)
    merged = [data.merge_counts(name, parts) for name, parts in groups.items()]
    return sorted(merged, key=lambda c: -c.started)


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
        by_country = await data.counts_by(
            conn,
            authorizations.c.country_iso,
            since,
            until,
            account_id=ctx.me.id,
            service_id=service_id,
        )
        prefix = func.substr(authorizations.c.phone, 1, PREFIX_DIGITS)
        blocks = await data.counts_by(
            conn, prefix, since, until, account_id=ctx.me.id, service_id=service_id
        )
    operators = await by_operator(ctx, blocks)
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
    conversion = [
        Series(ctx.t("Conversion"), [round(100 * (r.conversion or 0), 1) for r in rows], "s-ok")
    ]
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
        conversion_chart=bar_chart(
            labels, conversion, title=ctx.t("Conversion per day"), unit=" %", axis_max=100
        ),
        by_country=by_country,
        by_operator=operators,
        money_chart=bar_chart(labels, money, title=ctx.t("Spend per day"), unit=" ₽"),
        verification=await verification_stats.load(ctx, since, until, service_id),
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [Route("/dashboard/stats", page(dash, stats))]
