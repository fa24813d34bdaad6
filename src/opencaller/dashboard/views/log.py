"""The authorization log (search, filters, pages) and one authorization's details."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import reports
from .. import fmt
from ..csv_export import cell, csv_response
from ..web import Ctx, Dash, NotFound, int_param, page

STATUSES = ("pending", "reached", "not_reached", "test")
CHANNELS = ("flash", "voice", "mix", "inbound")


def status_of(row: object) -> str:
    m = row._mapping  # type: ignore[attr-defined]
    if m["is_test"]:
        return "test"
    return {1: "reached", 0: "not_reached"}.get(m["call_status"], "pending")


CSV_LIMIT = 100_000  # rows in one export; narrow the dates for more
CSV_HEADER = [
    "ucaller_id",
    "time_utc",
    "service_id",
    "service",
    "phone",
    "country",
    "channel",
    "direction",
    "status",
    "outcome",
    "sip_code",
    "cost_rub",
    "refunded",
    "client",
    "unique",
    "first_ucaller_id",
]


def _filter(ctx: Ctx) -> tuple[reports.LogFilter, list[str]]:
    """The filter the query asks for, and what in it could not be understood (said on the
    page rather than silently dropped)."""
    q = ctx.request.query_params
    errors: list[str] = []
    service_id = None
    if q.get("service"):
        service_id = int_param(q.get("service"))
    days: dict[str, float | None] = {}
    for name in ("from", "to"):
        raw = q.get(name, "").strip()
        days[name] = fmt.parse_day(raw)
        if raw and days[name] is None:
            errors.append(ctx.t('Not a date: "{value}". Use YYYY-MM-DD.', value=raw[:40]))
    since, until = days["from"], days["to"]
    if since is not None and until is not None and since > until:
        errors.append(ctx.t("The first day is after the last one."))
    flt = reports.LogFilter(
        service_id=service_id,
        since=since,
        until=until + reports.DAY_S if until is not None else None,  # the "to" day is included
        phone=re.sub(r"[^0-9*]", "", q.get("phone", ""))[:20],
        client=q.get("client", "").strip()[:64],
        unique=q.get("unique", "").strip()[:64],
        status=q.get("status", "") if q.get("status") in STATUSES else "",
        channel=q.get("channel", "") if q.get("channel") in CHANNELS else "",
    )
    return flt, errors


async def _own_services(ctx: Ctx, conn: AsyncConnection, flt: reports.LogFilter) -> list[Any]:
    services = await reports.account_services(conn, ctx.me.id)
    if flt.service_id is not None and flt.service_id not in {s.id for s in services}:
        raise NotFound
    return services


async def log(ctx: Ctx) -> Response:
    q = ctx.request.query_params
    flt, errors = _filter(ctx)
    page_no = fmt.parse_int(q.get("page"), low=1, high=1_000_000) or 1
    async with ctx.rt.db.read() as conn:
        services = await _own_services(ctx, conn, flt)
        rows, total = await reports.search_log(conn, ctx.me.id, flt, page_no)
    pages = max(1, -(-total // reports.PAGE_SIZE))
    kept = {k: v for k, v in q.items() if k != "page" and v}

    def page_url(n: int) -> str:
        return "/dashboard/log?" + urlencode({**kept, "page": n})

    return ctx.render(
        "log.html",
        rows=[(r, status_of(r)) for r in rows],
        total=total,
        page_no=page_no,
        pages=pages,
        page_url=page_url,
        services=services,
        q=q,
        statuses=STATUSES,
        channels=CHANNELS,
        errors=errors,
        csv_url="/dashboard/log.csv" + (f"?{urlencode(kept)}" if kept else ""),
        status=400 if errors else 200,
    )


async def log_csv(ctx: Ctx) -> Response:
    """The log as the filters select it, for a spreadsheet (UTF-8, comma-separated)."""
    flt, errors = _filter(ctx)
    if errors:
        return ctx.render("error.html", status=400, code=400, message=" ".join(errors))
    async with ctx.rt.db.read() as conn:
        await _own_services(ctx, conn, flt)
        rows = await reports.log_rows(conn, ctx.me.id, flt, CSV_LIMIT)
    name = f"opencaller-log-{ctx.me.id}-{fmt.day(ctx.now())}.csv"
    return csv_response(
        name,
        CSV_HEADER,
        (
            [
                r.id,
                fmt.when(r.created_at),
                r.service_id,
                cell(r.service_name),
                r.phone,
                r.country_iso,
                r.kind,
                r.direction,
                status_of(r),
                r.outcome or "",
                r.sip_code or "",
                fmt.rub_plain(r.cost),
                int(r.refunded),
                cell(r.client or ""),
                cell(r.unique_key or ""),
                r.first_id or "",
            ]
            for r in rows
        ),
    )


async def details(ctx: Ctx) -> Response:
    auth_id = int_param(ctx.request.path_params.get("aid"))
    async with ctx.rt.db.read() as conn:
        row = await reports.owned_authorization(conn, ctx.me.id, auth_id)
        if row is None:
            raise NotFound
        root = row.first_id or row.id
        chain = await reports.chain(conn, root)
    return ctx.render(
        "authorization.html",
        row=row,
        state=status_of(row),
        chain=[(r, status_of(r)) for r in chain],
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [
        Route("/dashboard/log", page(dash, log)),
        Route("/dashboard/log.csv", page(dash, log_csv)),
        Route("/dashboard/authorizations/{aid}", page(dash, details)),
    ]
