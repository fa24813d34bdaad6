"""Operator: accounts — search, create, block, verify phone, top up or correct, assign a
tariff, and one account's calls."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import account_admin, billing, reports, tariffs
from ...domain.accounts import Account, get_account
from ...domain.onboarding import AccountExists, open_account
from ...domain.passwords import hash_password
from .. import fmt
from ..web import Ctx, Dash, NotFound, int_param, page
from .auth import password_problem
from .log import status_of


async def accounts_list(ctx: Ctx, errors: list[str] | None = None, status: int = 200) -> Response:
    search = ctx.arg("q")[:254]
    page_no = fmt.parse_int(ctx.arg("page"), low=1, high=1_000_000) or 1
    async with ctx.rt.db.read() as conn:
        rows, total = await account_admin.search(conn, search, page_no)
    pages = max(1, -(-total // account_admin.PAGE_SIZE))
    return ctx.render(
        "admin/accounts.html",
        status=status,
        rows=rows,
        q=search,
        total=total,
        page_no=page_no,
        pages=pages,
        errors=errors or [],
        new_email=ctx.field("email"),
    )


async def create(ctx: Ctx) -> Response:
    """A new customer (or operator) account, made by the operator."""
    email = ctx.field("email").lower()
    password = ctx.field("password")
    balance = fmt.parse_rub(ctx.field("balance") or "0")
    errors = []
    if not fmt.EMAIL.match(email):
        errors.append("Enter a valid e-mail address.")
    problem = password_problem(password, email)
    if problem:
        errors.append(problem)
    if balance is None or balance < 0:
        errors.append("Enter an amount in roubles, 0 or more.")
    if errors or balance is None:
        return await accounts_list(ctx, errors, 400)
    hashed = await asyncio.to_thread(hash_password, password)
    now = ctx.now()
    try:
        async with ctx.rt.db.write() as conn:
            aid = await open_account(
                conn,
                email=email,
                password_hash=hashed,
                now=now,
                is_admin=ctx.field("is_admin") == "1",
                balance=balance,
                actor=ctx.me.email,
            )
    except AccountExists:
        errors.append("An account with this e-mail exists already.")
    if errors:
        return await accounts_list(ctx, errors, 400)
    await ctx.log(f"account created: {email}")
    await ctx.log(f"account created: by {ctx.me.email}", aid)
    ctx.flash("Account created.")
    return ctx.redirect(f"/admin/accounts/{aid}")


async def _account(ctx: Ctx) -> Account:
    aid = int_param(ctx.request.path_params.get("aid"))
    async with ctx.rt.db.read() as conn:
        account = await get_account(conn, aid)
    if account is None:
        raise NotFound
    return account


async def account_page(ctx: Ctx, errors: list[str] | None = None, status: int = 200) -> Response:
    account = await _account(ctx)
    async with ctx.rt.db.read() as conn:
        svc = await account_admin.service_rows(conn, account.id)
        moves = await reports.recent_ledger(conn, account.id, limit=20)
        all_tariffs = await tariffs.all_tariffs(conn)
        calls, calls_total = await reports.search_log(conn, account.id, reports.LogFilter(), 1)
    return ctx.render(
        "admin/account.html",
        status=status,
        account=account,
        services=svc,
        moves=moves,
        tariffs=all_tariffs,
        calls=[(r, status_of(r)) for r in calls],
        calls_total=calls_total,
        errors=errors or [],
    )


async def show(ctx: Ctx) -> Response:
    return await account_page(ctx)


async def _set(ctx: Ctx, account: Account, action: str, **flags: Any) -> Response:
    async with ctx.rt.db.write() as conn:
        sids = await account_admin.set_flags(conn, account.id, now=ctx.now(), **flags)
    for sid in sids:  # the API caches each service with its account
        ctx.rt.auth.forget(sid)
    await ctx.log(f"{action}: by {ctx.me.email}", account.id)
    await ctx.log(f"{action}: {account.email}")
    ctx.flash("Saved.")
    return ctx.redirect(f"/admin/accounts/{account.id}")


async def block(ctx: Ctx) -> Response:
    account = await _account(ctx)
    blocked = ctx.field("blocked") == "1"
    return await _set(
        ctx, account, "account blocked" if blocked else "account unblocked", blocked=blocked
    )


async def verify_phone(ctx: Ctx) -> Response:
    account = await _account(ctx)
    verified = ctx.field("verified") == "1"
    return await _set(
        ctx, account, "phone verified" if verified else "phone unverified", phone_verified=verified
    )


async def assign_tariff(ctx: Ctx) -> Response:
    account = await _account(ctx)
    tid = int_param(ctx.field("tariff_id"))
    async with ctx.rt.db.read() as conn:
        name = await tariffs.name_of(conn, tid)
    if name is None:
        return await account_page(ctx, ["No such tariff."], 400)
    return await _set(ctx, account, f"tariff changed to {name}", tariff_id=tid)


async def credit(ctx: Ctx) -> Response:
    account = await _account(ctx)
    amount = fmt.parse_rub(ctx.field("amount"))
    reason = ctx.field("reason")[:256]
    errors = []
    if amount is None or amount == 0:
        errors.append("Enter an amount in roubles (negative to take money off).")
    if not reason:
        errors.append("A reason is required; it is kept in the ledger.")
    if errors or amount is None:
        return await account_page(ctx, errors, 400)
    correction = ctx.field("kind") == "correction"
    kind = billing.adjustment_kind(amount, correction=correction)
    async with ctx.rt.db.write() as conn:
        await billing.adjust(
            conn,
            account.id,
            amount,
            now=ctx.now(),
            actor=ctx.me.email,
            reason=reason,
            correction=correction,
        )
    await ctx.log(f"balance {kind} {fmt.rub_plain(amount)}: {account.email} ({reason})")
    ctx.flash("Balance changed.")
    return ctx.redirect(f"/admin/accounts/{account.id}")


def routes(dash: Dash) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/admin/accounts", page(dash, accounts_list, admin=True)),
        Route("/admin/accounts/new", page(dash, create, admin=True), methods=post),
        Route("/admin/accounts/{aid}", page(dash, show, admin=True)),
        Route("/admin/accounts/{aid}/blocked", page(dash, block, admin=True), methods=post),
        Route("/admin/accounts/{aid}/phone", page(dash, verify_phone, admin=True), methods=post),
        Route("/admin/accounts/{aid}/tariff", page(dash, assign_tariff, admin=True), methods=post),
        Route("/admin/accounts/{aid}/credit", page(dash, credit, admin=True), methods=post),
    ]
