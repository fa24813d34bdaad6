"""Sign up, sign in (with the second factor when enabled), sign out, language."""

from __future__ import annotations

import asyncio
import functools
import secrets

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...domain import two_factor
from ...domain.accounts import (
    get_account,
    get_account_by_email,
    password_hash_of,
    totp_secret_of,
)
from ...domain.onboarding import AccountExists, open_account
from ...domain.passwords import WeakPassword, check_password, hash_password, verify_password
from .. import fmt, i18n
from ..web import Ctx, Dash, page

HOME = "/dashboard"
TOO_MANY = "Too many attempts. Try again in {minutes} min."


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the e-mail is unknown, so both cases take the same time."""
    return hash_password(secrets.token_urlsafe(16))


def password_problem(password: str, email: str) -> str | None:
    """The policy's complaint about a new password (domain/passwords.py), or None."""
    try:
        check_password(password, email=email)
    except WeakPassword as exc:
        return str(exc)
    return None


def too_many(ctx: Ctx, wait_s: int) -> str:
    return ctx.t(TOO_MANY, minutes=max(1, -(-wait_s // 60)))


async def _password_hash(ctx: Ctx, account_id: int) -> str:
    async with ctx.rt.db.read() as conn:
        return await password_hash_of(conn, account_id)


async def _signed_in(ctx: Ctx, account_id: int, target: str) -> Response:
    """The last step of every sign-in: a new session, and this browser remembered."""
    await ctx.start_session(account_id)
    await ctx.log("sign-in", account_id)
    response = ctx.redirect(target)
    await ctx.dash.sessions.remember_device(
        ctx.request, response, account_id, secure=ctx.dash.is_https(ctx.request)
    )
    return response


async def signup(ctx: Ctx) -> Response:
    if ctx.account is not None:
        return ctx.redirect(HOME)
    email = ctx.field("email").lower()
    errors: list[str] = []
    if ctx.request.method == "POST":
        password = ctx.field("password")
        if not fmt.EMAIL.match(email):
            errors.append("Enter a valid e-mail address.")
        problem = password_problem(password, email)
        if problem:
            errors.append(problem)
        elif password != ctx.field("password2"):
            errors.append("The passwords do not match.")
        if not errors:
            # Sign-ups are counted like sign-in attempts from this address: finding out which
            # e-mails have accounts costs as much here as on the sign-in form.
            wait = await ctx.dash.guard.sign_up(ip=ctx.ip, now=ctx.now())
            if wait is not None:
                errors.append(too_many(ctx, wait))
        if not errors:
            hashed = await asyncio.to_thread(hash_password, password)
            now = ctx.now()
            try:
                async with ctx.rt.db.write() as conn:
                    account_id = await open_account(
                        conn, email=email, password_hash=hashed, now=now
                    )
            except AccountExists:
                errors.append("An account with this e-mail exists already.")
            if not errors:
                await ctx.log("account created", account_id)
                await ctx.start_session(account_id)
                ctx.flash("Welcome! Create your first service to get a key.")
                return ctx.redirect(HOME)
    return ctx.render("signup.html", email=email, errors=errors, status=400 if errors else 200)


async def signin(ctx: Ctx) -> Response:
    if ctx.account is not None:
        return ctx.redirect(HOME)
    email = ctx.field("email").lower()[:254]
    target = fmt.safe_next(ctx.arg("next") or ctx.field("next"), HOME)
    error = ""
    status = 200
    if ctx.request.method == "POST":
        async with ctx.rt.db.read() as conn:
            account = await get_account_by_email(conn, email)
        device = await ctx.dash.sessions.device(ctx.request, account.id) if account else None
        guard = ctx.dash.guard
        # Counted before the password is looked at: racing requests cannot outrun the limit.
        wait = await guard.sign_in(ip=ctx.ip, email=email, device=device, now=ctx.now())
        if wait is not None:
            error, status = too_many(ctx, wait), 429
        else:
            hashed = await _password_hash(ctx, account.id) if account else _dummy_hash()
            ok = await asyncio.to_thread(verify_password, hashed, ctx.field("password"))
            if account is None or not ok:
                if account is not None:
                    await ctx.log("failed sign-in", account.id)
                error, status = "Wrong e-mail or password.", 400
            else:
                await guard.signed_in(ip=ctx.ip, email=email, device=device)
                if account.two_auth:
                    ctx.session.reset()
                    ctx.session.set("pending", account.id)
                    ctx.session.set("next", target)
                    return ctx.redirect("/dashboard/signin/code")
                return await _signed_in(ctx, account.id, target)
    return ctx.render("signin.html", email=email, next=target, error=error, status=status)


async def second_factor(ctx: Ctx) -> Response:
    pending = ctx.session.get("pending")
    if not isinstance(pending, int):
        return ctx.redirect("/dashboard/signin")
    async with ctx.rt.db.read() as conn:
        account = await get_account(conn, pending)
        secret = await totp_secret_of(conn, pending)
    if account is None or not secret:
        ctx.session.reset()
        return ctx.redirect("/dashboard/signin")
    error, status = "", 200
    if ctx.request.method == "POST":
        now = ctx.now()
        code = ctx.field("code")[:64]
        wait = await ctx.dash.guard.account_check(account.id, "code", now)
        if wait is not None:
            error, status = too_many(ctx, wait), 429
        else:
            async with ctx.rt.db.write() as conn:
                ok = await two_factor.verify_totp(conn, account.id, secret, code, now=now)
                recovery = not ok and await two_factor.use_recovery_code(
                    conn, account.id, code, now=now
                )
            if ok or recovery:
                await ctx.dash.guard.account_ok(account.id, "code")
                if recovery:
                    await ctx.log("recovery code used", account.id)
                    ctx.flash("You signed in with a recovery code; it cannot be used again.")
                target = fmt.safe_next(ctx.session.get("next"), HOME)
                return await _signed_in(ctx, account.id, target)
            await ctx.log("failed sign-in: wrong one-time code", account.id)
            error, status = "Wrong code.", 400
    return ctx.render("signin_code.html", error=error, status=status)


async def signout(ctx: Ctx) -> Response:
    if ctx.account is not None:
        await ctx.log("sign-out")
    await ctx.end_session()
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
