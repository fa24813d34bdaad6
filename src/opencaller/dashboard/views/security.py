"""Security: password change, two-factor (TOTP) on and off with recovery codes, the browsers
signed in to the account, and the activity log."""

from __future__ import annotations

import asyncio
import dataclasses

import pyotp
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import reports, two_factor, web_sessions
from ...domain.accounts import password_hash_of, set_password, totp_secret_of
from ...domain.passwords import hash_password, verify_password
from .. import i18n, qr
from ..web import Ctx, Dash, page
from .auth import password_problem, too_many

ISSUER = "opencaller"


def _sid(ctx: Ctx) -> str:
    assert ctx.web_session is not None  # every page here needs a signed-in browser
    return ctx.web_session.id


async def security(
    ctx: Ctx, errors: list[str] | None = None, status: int = 200, codes: list[str] | None = None
) -> Response:
    async with ctx.rt.db.read() as conn:
        logs = await reports.account_actions(conn, ctx.me.id, limit=100)
        browsers = await web_sessions.of_account(conn, ctx.me.id)
        pending = await web_sessions.pending_totp(conn, _sid(ctx))
        codes_left = await two_factor.recovery_codes_left(conn, ctx.me.id)
    uri = picture = None
    if pending:
        uri = pyotp.TOTP(pending).provisioning_uri(name=ctx.me.email, issuer_name=ISSUER)
        picture = qr.svg(uri, title=ctx.t("QR code for the authenticator app"))
    return ctx.render(
        "security.html",
        status=status,
        errors=errors or [],
        logs=[(r, i18n.action(ctx.lang, r.action)) for r in logs],
        pending=pending,
        uri=uri,
        qr=picture,
        codes=codes,
        codes_left=codes_left,
        browsers=browsers,
        current=_sid(ctx),
    )


async def show(ctx: Ctx) -> Response:
    return await security(ctx)


async def _password_checked(ctx: Ctx, password: str) -> str | None:
    """None when ``password`` is the account's; else the error to show. Checks are counted
    per account before the comparison, like sign-ins."""
    wait = await ctx.dash.guard.account_check(ctx.me.id, "password", ctx.now())
    if wait is not None:
        return too_many(ctx, wait)
    async with ctx.rt.db.read() as conn:
        hashed = await password_hash_of(conn, ctx.me.id)
    if not await asyncio.to_thread(verify_password, hashed, password):
        await ctx.log("wrong current password")
        return "The current password is wrong."
    await ctx.dash.guard.account_ok(ctx.me.id, "password")
    return None


async def change_password(ctx: Ctx) -> Response:
    current, new = ctx.field("current"), ctx.field("password")
    wrong = await _password_checked(ctx, current)
    if wrong:
        return await security(ctx, [wrong], 400)
    problem = password_problem(new, ctx.me.email)
    if problem:
        return await security(ctx, [problem], 400)
    if new != ctx.field("password2"):
        return await security(ctx, ["The passwords do not match."], 400)
    new_hash = await asyncio.to_thread(hash_password, new)
    async with ctx.rt.db.write() as conn:
        await set_password(conn, ctx.me.id, new_hash, now=ctx.now())
        # this browser stays signed in; every other one is signed out
        await web_sessions.end_all(conn, ctx.me.id, keep=_sid(ctx))
    await ctx.log("password changed")
    ctx.flash("Password changed. Other browsers were signed out.")
    return ctx.redirect("/dashboard/security")


async def start_2fa(ctx: Ctx) -> Response:
    async with ctx.rt.db.write() as conn:  # kept with the session, never in the cookie
        await web_sessions.set_pending_totp(conn, _sid(ctx), pyotp.random_base32())
    return ctx.redirect("/dashboard/security#two-factor")


async def enable_2fa(ctx: Ctx) -> Response:
    async with ctx.rt.db.read() as conn:
        pending = await web_sessions.pending_totp(conn, _sid(ctx))
    if not pending:
        return ctx.redirect("/dashboard/security")
    now = ctx.now()
    if not pyotp.TOTP(pending).verify(
        two_factor.normalize_code(ctx.field("code")), for_time=now, valid_window=1
    ):
        return await security(ctx, ["Wrong code. Check the time on your phone and try again."], 400)
    async with ctx.rt.db.write() as conn:
        codes = await two_factor.turn_on(conn, ctx.me.id, pending, now=now)
        await web_sessions.set_pending_totp(conn, _sid(ctx), None)
        ended = await web_sessions.end_all(conn, ctx.me.id, keep=_sid(ctx))
    await ctx.log("two-factor authentication enabled")
    ctx.flash("Two-factor authentication is on.")
    if ended:
        ctx.flash("Other browsers were signed out.")
    ctx.account = dataclasses.replace(ctx.me, two_auth=True)  # the page shows the new state
    return await security(ctx, codes=codes)


async def new_codes(ctx: Ctx) -> Response:
    wrong = await _password_checked(ctx, ctx.field("current"))
    if wrong:
        return await security(ctx, [wrong], 400)
    async with ctx.rt.db.write() as conn:
        codes = await two_factor.new_recovery_codes(conn, ctx.me.id, now=ctx.now())
    await ctx.log("new recovery codes")
    return await security(ctx, codes=codes)


async def disable_2fa(ctx: Ctx) -> Response:
    async with ctx.rt.db.read() as conn:
        secret = await totp_secret_of(conn, ctx.me.id)
    now = ctx.now()
    wait = await ctx.dash.guard.account_check(ctx.me.id, "code", now)
    if wait is not None:
        return await security(ctx, [too_many(ctx, wait)], 429)
    async with ctx.rt.db.write() as conn:
        ok = secret is not None and await two_factor.verify_totp(
            conn, ctx.me.id, secret, ctx.field("code"), now=now
        )
    if not ok:
        return await security(ctx, ["Wrong code."], 400)
    await ctx.dash.guard.account_ok(ctx.me.id, "code")
    async with ctx.rt.db.write() as conn:
        await two_factor.turn_off(conn, ctx.me.id, now=now)
    await ctx.log("two-factor authentication disabled")
    ctx.flash("Two-factor authentication is off.")
    return ctx.redirect("/dashboard/security")


async def end_session(ctx: Ctx) -> Response:
    sid = ctx.field("session")
    async with ctx.rt.db.write() as conn:
        if sid == "others":
            await web_sessions.end_all(conn, ctx.me.id, keep=_sid(ctx))
        else:
            await web_sessions.end(conn, ctx.me.id, sid[:64])
    await ctx.log("signed out another browser")
    ctx.flash("Signed out.")
    if sid == _sid(ctx):
        ctx.session.reset()
        return ctx.redirect("/dashboard/signin")
    return ctx.redirect("/dashboard/security#browsers")


def routes(dash: Dash) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/dashboard/security", page(dash, show)),
        Route("/dashboard/security/password", page(dash, change_password), methods=post),
        Route("/dashboard/security/2fa/start", page(dash, start_2fa), methods=post),
        Route("/dashboard/security/2fa/enable", page(dash, enable_2fa), methods=post),
        Route("/dashboard/security/2fa/disable", page(dash, disable_2fa), methods=post),
        Route("/dashboard/security/2fa/codes", page(dash, new_codes), methods=post),
        Route("/dashboard/security/sessions/end", page(dash, end_session), methods=post),
    ]
