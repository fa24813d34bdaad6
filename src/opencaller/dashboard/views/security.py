"""Security: password change, two-factor (TOTP) on and off, and the activity log."""

from __future__ import annotations

import asyncio

import pyotp
from sqlalchemy import select, update
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain.passwords import hash_password, verify_password
from ...storage.tables import account_logs, accounts
from .. import i18n
from ..web import Ctx, Dash, page
from .auth import MIN_PASSWORD

ISSUER = "opencaller"


async def _secrets(ctx: Ctx) -> tuple[str, str | None]:
    async with ctx.rt.db.read() as conn:
        q = select(accounts.c.password_hash, accounts.c.totp_secret)
        row = (await conn.execute(q.where(accounts.c.id == ctx.me.id))).one()
    return row.password_hash, row.totp_secret


async def security(ctx: Ctx, errors: list[str] | None = None, status: int = 200) -> Response:
    async with ctx.rt.db.read() as conn:
        logs = (
            await conn.execute(
                select(account_logs)
                .where(account_logs.c.account_id == ctx.me.id)
                .order_by(account_logs.c.id.desc())
                .limit(100)
            )
        ).all()
    pending = ctx.session.get("totp")
    uri = None
    if isinstance(pending, str):
        uri = pyotp.TOTP(pending).provisioning_uri(name=ctx.me.email, issuer_name=ISSUER)
    return ctx.render(
        "security.html",
        status=status,
        errors=errors or [],
        logs=[(r, i18n.action(ctx.lang, r.action)) for r in logs],
        pending=pending if isinstance(pending, str) else None,
        uri=uri,
    )


async def show(ctx: Ctx) -> Response:
    return await security(ctx)


async def change_password(ctx: Ctx) -> Response:
    current, new = ctx.field("current"), ctx.field("password")
    hashed, _ = await _secrets(ctx)
    if not await asyncio.to_thread(verify_password, hashed, current):
        return await security(ctx, ["The current password is wrong."], 400)
    if len(new) < MIN_PASSWORD:
        return await security(ctx, ["The password must be at least 8 characters long."], 400)
    if new != ctx.field("password2"):
        return await security(ctx, ["The passwords do not match."], 400)
    new_hash = await asyncio.to_thread(hash_password, new)
    async with ctx.rt.db.write() as conn:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == ctx.me.id)
            .values(password_hash=new_hash, updated_at=ctx.now())
        )
    await ctx.log("password changed")
    # this browser stays signed in; every other session no longer matches the new hash
    ctx.session.set("mark", await ctx.dash.sessions.password_mark(new_hash))
    ctx.flash("Password changed. Other browsers were signed out.")
    return ctx.redirect("/dashboard/security")


async def start_2fa(ctx: Ctx) -> Response:
    ctx.session.set("totp", pyotp.random_base32())
    return ctx.redirect("/dashboard/security#two-factor")


async def enable_2fa(ctx: Ctx) -> Response:
    pending = ctx.session.get("totp")
    if not isinstance(pending, str):
        return ctx.redirect("/dashboard/security")
    if not pyotp.TOTP(pending).verify(ctx.field("code").replace(" ", ""), valid_window=1):
        return await security(ctx, ["Wrong code. Check the time on your phone and try again."], 400)
    async with ctx.rt.db.write() as conn:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == ctx.me.id)
            .values(totp_secret=pending, two_auth=True, updated_at=ctx.now())
        )
    ctx.session.drop("totp")
    await ctx.log("two-factor authentication enabled")
    ctx.flash("Two-factor authentication is on.")
    return ctx.redirect("/dashboard/security")


async def disable_2fa(ctx: Ctx) -> Response:
    _, secret = await _secrets(ctx)
    code = ctx.field("code").replace(" ", "")
    if not secret or not pyotp.TOTP(secret).verify(code, valid_window=1):
        return await security(ctx, ["Wrong code."], 400)
    async with ctx.rt.db.write() as conn:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == ctx.me.id)
            .values(totp_secret=None, two_auth=False, updated_at=ctx.now())
        )
    await ctx.log("two-factor authentication disabled")
    ctx.flash("Two-factor authentication is off.")
    return ctx.redirect("/dashboard/security")


def routes(dash: Dash) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/dashboard/security", page(dash, show)),
        Route("/dashboard/security/password", page(dash, change_password), methods=post),
        Route("/dashboard/security/2fa/start", page(dash, start_2fa), methods=post),
        Route("/dashboard/security/2fa/enable", page(dash, enable_2fa), methods=post),
        Route("/dashboard/security/2fa/disable", page(dash, disable_2fa), methods=post),
    ]
