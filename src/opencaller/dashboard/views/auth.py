"""Sign up, sign in (with the second factor when enabled), sign out, language."""

from __future__ import annotations

import asyncio
import functools
import secrets

import pyotp
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...domain import billing
from ...domain.accounts import create_account, get_account, get_account_by_email
from ...domain.passwords import hash_password, verify_password
from ...storage.tables import accounts
from .. import fmt, i18n
from ..web import Ctx, Dash, page

HOME = "/dashboard"
MIN_PASSWORD = 8


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the e-mail is unknown, so both cases take the same time."""
    return hash_password(secrets.token_urlsafe(16))


async def _password_hash(ctx: Ctx, account_id: int) -> str:
    async with ctx.rt.db.read() as conn:
        q = accounts.select().with_only_columns(accounts.c.password_hash)
        return str((await conn.execute(q.where(accounts.c.id == account_id))).scalar_one())


async def _start_session(ctx: Ctx, account_id: int) -> None:
    ctx.session.reset()
    ctx.session.set("account", account_id)
    mark = await ctx.dash.sessions.password_mark(await _password_hash(ctx, account_id))
    ctx.session.set("mark", mark)


async def signup(ctx: Ctx) -> Response:
    if ctx.account is not None:
        return ctx.redirect(HOME)
    email = ctx.field("email").lower()
    errors: list[str] = []
    if ctx.request.method == "POST":
        password = ctx.field("password")
        if not fmt.EMAIL.match(email):
            errors.append("Enter a valid e-mail address.")
        if len(password) < MIN_PASSWORD:
            errors.append("The password must be at least 8 characters long.")
        elif password != ctx.field("password2"):
            errors.append("The passwords do not match.")
        if not errors:
            hashed = await asyncio.to_thread(hash_password, password)
            now = ctx.now()
            async with ctx.rt.db.write() as conn:
                if await get_account_by_email(conn, email) is not None:
                    errors.append("An account with this e-mail exists already.")
                else:
                    tariff_id = await billing.ensure_default_tariff(conn, now)
                    account_id = await create_account(
                        conn, email=email, now=now, password_hash=hashed, tariff_id=tariff_id
                    )
            if not errors:
                await ctx.log("account created", account_id)
                await _start_session(ctx, account_id)
                ctx.flash("Welcome! Create your first service to get a key.")
                return ctx.redirect(HOME)
    return ctx.render("signup.html", email=email, errors=errors, status=400 if errors else 200)


async def signin(ctx: Ctx) -> Response:
    if ctx.account is not None:
        return ctx.redirect(HOME)
    email = ctx.field("email").lower()
    target = fmt.safe_next(ctx.arg("next") or ctx.field("next"), HOME)
    error = ""
    status = 200
    if ctx.request.method == "POST":
        now = ctx.now()
        throttle = ctx.dash.throttle
        if throttle.blocked(ctx.ip, email, now):
            error, status = "Too many failed attempts. Try again in 15 minutes.", 429
        else:
            async with ctx.rt.db.read() as conn:
                account = await get_account_by_email(conn, email)
            hashed = await _password_hash(ctx, account.id) if account else _dummy_hash()
            ok = await asyncio.to_thread(verify_password, hashed, ctx.field("password"))
            if account is None or not ok:
                throttle.failed(ctx.ip, email, now)
                if account is not None:
                    await ctx.log("failed sign-in", account.id)
                error, status = "Wrong e-mail or password.", 400
            else:
                throttle.succeeded(email)
                if account.two_auth:
                    ctx.session.reset()
                    ctx.session.set("pending", account.id)
                    ctx.session.set("next", target)
                    return ctx.redirect("/dashboard/signin/code")
                await _start_session(ctx, account.id)
                await ctx.log("sign-in", account.id)
                return ctx.redirect(target)
    return ctx.render("signin.html", email=email, next=target, error=error, status=status)


async def second_factor(ctx: Ctx) -> Response:
    pending = ctx.session.get("pending")
    if not isinstance(pending, int):
        return ctx.redirect("/dashboard/signin")
    async with ctx.rt.db.read() as conn:
        account = await get_account(conn, pending)
        q = accounts.select().with_only_columns(accounts.c.totp_secret)
        secret = (await conn.execute(q.where(accounts.c.id == pending))).scalar()
    if account is None or not secret:
        ctx.session.reset()
        return ctx.redirect("/dashboard/signin")
    error, status = "", 200
    if ctx.request.method == "POST":
        now = ctx.now()
        if ctx.dash.throttle.blocked(ctx.ip, account.email, now):
            error, status = "Too many failed attempts. Try again in 15 minutes.", 429
        elif pyotp.TOTP(secret).verify(ctx.field("code").replace(" ", ""), valid_window=1):
            target = fmt.safe_next(ctx.session.get("next"), HOME)
            await _start_session(ctx, account.id)
            await ctx.log("sign-in", account.id)
            return ctx.redirect(target)
        else:
            ctx.dash.throttle.failed(ctx.ip, account.email, now)
            await ctx.log("failed sign-in: wrong one-time code", account.id)
            error, status = "Wrong code.", 400
    return ctx.render("signin_code.html", error=error, status=status)


async def signout(ctx: Ctx) -> Response:
    if ctx.account is not None:
        await ctx.log("sign-out")
    ctx.session.reset()
    return ctx.redirect("/dashboard/signin")


async def language(ctx: Ctx) -> Response:
    lang = i18n.pick(ctx.request.path_params.get("lang"))
    response = RedirectResponse(fmt.safe_next(ctx.arg("next"), HOME), status_code=303)
    response.set_cookie(i18n.COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax")
    return response


def routes(dash: Dash) -> list[BaseRoute]:
    both = ["GET", "POST"]
    return [
        Route("/dashboard/signup", page(dash, signup, public=True), methods=both),
        Route("/dashboard/signin", page(dash, signin, public=True), methods=both),
        Route("/dashboard/signin/code", page(dash, second_factor, public=True), methods=both),
        Route("/dashboard/signout", page(dash, signout, public=True), methods=["POST"]),
        Route("/dashboard/lang/{lang}", page(dash, language, public=True)),
    ]
