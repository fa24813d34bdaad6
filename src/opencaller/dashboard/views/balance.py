"""Balance: current and bonus balance, the tariff and its prices, the ledger and its CSV."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import reports, tariffs
from ...domain.accounts import get_account, set_low_balance_alert
from .. import fmt
from ..csv_export import cell, csv_response
from ..web import Ctx, Dash, page


async def balance(ctx: Ctx, errors: list[str] | None = None, status: int = 200) -> Response:
    page_no = fmt.parse_int(ctx.arg("page"), low=1, high=1_000_000) or 1
    async with ctx.rt.db.read() as conn:
        tariff = None
        prices: list[object] = []
        if ctx.me.tariff_id is not None:
            tariff = await tariffs.get(conn, ctx.me.tariff_id)
            prices = await tariffs.prices(conn, ctx.me.tariff_id, defaults_first=False)
        rows, total = await reports.ledger_rows(conn, ctx.me.id, page=page_no)
    pages = max(1, -(-total // reports.PAGE_SIZE))
    return ctx.render(
        "balance.html",
        status=status,
        tariff=tariff,
        prices=prices,
        rows=rows,
        page_no=page_no,
        pages=pages,
        threshold=ctx.alert_threshold(),
        errors=errors or [],
    )


async def set_alert(ctx: Ctx) -> Response:
    """The customer's own low-balance threshold (0 turns the notice off until the balance is
    gone)."""
    amount = fmt.parse_rub(ctx.field("threshold"))
    if amount is None or amount < 0:
        return await balance(ctx, ["Enter an amount in roubles, 0 or more."], 400)
    async with ctx.rt.db.write() as conn:
        await set_low_balance_alert(conn, ctx.me.id, amount, now=ctx.now())
    ctx.flash("Saved.")
    return ctx.redirect("/dashboard/balance#alert")


CSV_HEADER = [
    "id",
    "time_utc",
    "kind",
    "amount_rub",
    "balance_after_rub",
    "channel",
    "authorization_id",
    "actor",
    "reason",
]


async def ledger_csv(ctx: Ctx) -> Response:
    async with ctx.rt.db.read() as conn:
        account = await get_account(conn, ctx.me.id)
        rows, _ = await reports.ledger_rows(conn, ctx.me.id, page=None)
    assert account is not None
    name = f"opencaller-ledger-{account.id}-{fmt.day(ctx.now())}.csv"
    return csv_response(
        name,
        CSV_HEADER,
        (
            [
                r.id,
                fmt.when(r.created_at),
                r.kind,
                fmt.rub_plain(r.amount),
                fmt.rub_plain(r.balance_after),
                r.channel or "",
                r.authorization_id or "",
                r.actor,
                cell(r.reason),
            ]
            for r in rows
        ),
    )


def routes(dash: Dash) -> list[BaseRoute]:
    return [
        Route("/dashboard/balance", page(dash, balance)),
        Route("/dashboard/balance/alert", page(dash, set_alert), methods=["POST"]),
        Route("/dashboard/balance.csv", page(dash, ledger_csv)),
    ]
