"""Statistics: authorizations per day and per service, conversion per day, country and
operator, spend per day."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import reports
from ...domain.accounts import Service
from ...numbering import InvalidPhoneNumber
from .. import fmt, verification_stats
from ..charts import Series, bar_chart, legend
from ..web import Ctx, Dash, NotFound, int_param, page

RANGES = (7, 30, 90)
# Operators are told by the range that holds a number: its first 8 digits (country code and a
# 7-digit block) name the holder closely enough, and one lookup serves a whole block.
PREFIX_DIGITS = 8


async def by_operator(ctx: Ctx, blocks: list[reports.Counts]) -> list[reports.Counts]:
    """Counts per number block, regrouped by the operator that holds each block."""
    groups: dict[str, list[reports.Counts]] = {}
    for block in blocks:
        sample = block.label.ljust(11, "0") if block.label.startswith("7") else block.label
        try:
            info = await ctx.rt.directory.lookup_e164(sample)
            name = info.operator or info.provider or ctx.t("Unknown")
        except InvalidPhoneNumber:
            name = ctx.t("Unknown")
        groups.setdefault(name, []).append(block)
    merged = [reports.merge_counts(name, parts) for name, parts in groups.items()]
    return sorted(merged, key=lambda c: -c.started)


def day_range(ctx: Ctx) -> tuple[int, list[int], float, float]:
    """The chosen number of days and their UTC day numbers, oldest first, up to today."""
    days = fmt.parse_int(ctx.arg("days"), low=1, high=366) or 30
    today = int(ctx.now() // reports.DAY_S)
    numbers = list(range(today - days + 1, today + 1))
    return days, numbers, numbers[0] * reports.DAY_S, (today + 1) * reports.DAY_S


@dataclass(frozen=True, slots=True)
class _Figures:
    """What the statistics page reads, for one account over a range of days."""

    services: list[Service]
    by_day: dict[int, reports.Counts]
    by_service: list[reports.Counts]
    spend: dict[int, int]
    by_country: list[reports.Counts]
    blocks: list[reports.Counts]


async def _read(ctx: Ctx, service_id: int | None, since: float, until: float) -> _Figures:
    me, sqlite = ctx.me.id, ctx.rt.db.sqlite
    async with ctx.rt.db.read() as conn:
        services = await reports.account_services(conn, me)
        if service_id is not None and service_id not in {s.id for s in services}:
            raise NotFound
        by_day = await reports.counts_by_day(
            conn, sqlite, since, until, account_id=me, service_id=service_id
        )
        by_service = await reports.counts_by_service(conn, since, until, account_id=me)
        spend = await reports.spend_by_day(conn, sqlite, me, since, until)
        by_country = await reports.counts_by_country(
            conn, since, until, account_id=me, service_id=service_id
        )
        blocks = await reports.counts_by_block(
            conn, PREFIX_DIGITS, since, until, account_id=me, service_id=service_id
        )
    if service_id is not None:
        by_service = [c for c in by_service if c.key == service_id]
    return _Figures(services, by_day, by_service, spend, by_country, blocks)


def _day_rows(
    numbers: list[int], labels: list[str], by_day: dict[int, reports.Counts]
) -> list[reports.Counts]:
    """One row per day, oldest first, labelled; a day without calls is a row of zeros."""
    empty = reports.Counts("", 0, 0, 0, 0, 0, 0)
    return [
        dataclasses.replace(by_day.get(d) or dataclasses.replace(empty, key=d), label=label)
        for d, label in zip(numbers, labels, strict=True)
    ]


def _charts(
    ctx: Ctx, labels: list[str], rows: list[reports.Counts], spent: list[int]
) -> dict[str, Any]:
    calls = [
        Series(ctx.t("Reached"), [r.reached for r in rows], "s-ok"),
        Series(ctx.t("Not reached"), [r.not_reached for r in rows], "s-bad"),
        Series(ctx.t("In progress"), [r.pending for r in rows], "s-wait"),
        Series(ctx.t("Test"), [r.tests for r in rows], "s-test"),
    ]
    money = [Series(ctx.t("Spent"), [units / 10_000 for units in spent], "s-money")]
    conversion = [
        Series(ctx.t("Conversion"), [round(100 * (r.conversion or 0), 1) for r in rows], "s-ok")
    ]
    return {
        "calls_chart": bar_chart(labels, calls, title=ctx.t("Authorizations per day")),
        "calls_legend": legend(calls),
        "conversion_chart": bar_chart(
            labels, conversion, title=ctx.t("Conversion per day"), unit=" %", axis_max=100
        ),
        "money_chart": bar_chart(labels, money, title=ctx.t("Spend per day"), unit=" ₽"),
    }


async def stats(ctx: Ctx) -> Response:
    days, numbers, since, until = day_range(ctx)
    service_id = int_param(ctx.arg("service")) if ctx.arg("service") else None
    figures = await _read(ctx, service_id, since, until)
    labels = [fmt.day(d * reports.DAY_S) for d in numbers]
    rows = _day_rows(numbers, labels, figures.by_day)
    return ctx.render(
        "stats.html",
        days=days,
        ranges=RANGES,
        services=figures.services,
        service_id=service_id,
        rows=list(reversed(rows)),
        total=reports.merge_counts(ctx.t("Total"), rows),
        by_service=figures.by_service,
        spent=sum(figures.spend.values()),
        by_country=figures.by_country,
        by_operator=await by_operator(ctx, figures.blocks),
        **_charts(ctx, labels, rows, [figures.spend.get(d, 0) for d in numbers]),
        verification=await verification_stats.load(ctx, since, until, service_id),
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [Route("/dashboard/stats", page(dash, stats))]
