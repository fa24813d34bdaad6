"""The authorization log (search, filters, pages) and one authorization's details."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import data, fmt
from ..web import Ctx, Dash, NotFound, int_param, page

STATUSES = ("pending", "reached", "not_reached", "test")
CHANNELS = ("flash", "voice", "mix", "inbound")


def status_of(row: object) -> str:
    m = row._mapping  # type: ignore[attr-defined]
    if m["is_test"]:
        return "test"
    return {1: "reached", 0: "not_reached"}.get(m["call_status"], "pending")


async def log(ctx: Ctx) -> Response:
    q = ctx.request.query_params
    service_id = None
    if q.get("service"):
        service_id = int_param(q.get("service"))
    until = fmt.parse_day(q.get("to"))
    flt = data.LogFilter(
        service_id=service_id,
        since=fmt.parse_day(q.get("from")),
        until=until + data.DAY_S if until is not None else None,  # the "to" day is included
        phone=re.sub(r"[^0-9*]", "", q.get("phone", ""))[:20],
        client=q.get("client", "").strip()[:64],
        unique=q.get("unique", "").strip()[:64],
        status=q.get("status", "") if q.get("status") in STATUSES else "",
        channel=q.get("channel", "") if q.get("channel") in CHANNELS else "",
    )
    page_no = fmt.parse_int(q.get("page"), low=1, high=1_000_000) or 1
    async with ctx.rt.db.read() as conn:
        services = await data.account_services(conn, ctx.me.id)
        if service_id is not None and service_id not in {s.id for s in services}:
            raise NotFound
        rows, total = await data.search_log(conn, ctx.me.id, flt, page_no)
    pages = max(1, -(-total // data.PAGE_SIZE))
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
    )


async def details(ctx: Ctx) -> Response:
    auth_id = int_param(ctx.request.path_params.get("aid"))
    async with ctx.rt.db.read() as conn:
        row = await data.owned_authorization(conn, ctx.me.id, auth_id)
        if row is None:
            raise NotFound
        root = row.first_id or row.id
        chain = await data.chain(conn, root)
    return ctx.render(
        "authorization.html",
        row=row,
        state=status_of(row),
        chain=[(r, status_of(r)) for r in chain],
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [
        Route("/dashboard/log", page(dash, log)),
        Route("/dashboard/authorizations/{aid}", page(dash, details)),
    ]
