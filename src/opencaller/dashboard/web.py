"""The plumbing every page shares: session, signed-in account, CSRF, rendering, redirects."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..domain import web_sessions
from ..domain.accounts import Account, get_account, log_action
from ..domain.money import to_units
from ..domain.signin_guard import SigninGuard
from ..domain.web_sessions import WebSession
from ..runtime import Runtime
from ..wire.app import client_ip
from . import csrf, fmt, i18n
from .session import MAX_AGE_S, Session, Sessions

TEMPLATES = Path(__file__).parent / "templates"
SIGNIN = "/dashboard/signin"
FORM_EXPIRED = "The form has expired. Reload the page and try again."


class NotFound(Exception):
    """Raised by a page when the thing is missing or belongs to someone else (both are 404)."""


class Dash:
    """State shared by the dashboard's pages for one Runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sessions = Sessions(rt)
        self.guard = SigninGuard(rt.db)
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in rt.settings.trusted_proxies]
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            rub=fmt.rub, when=fmt.when, day=fmt.day, rub_plain=fmt.rub_plain, outcome=fmt.outcome
        )

    def is_https(self, request: Request) -> bool:
        """Whether the browser talks https to us: directly, or through a trusted proxy that
        says so in ``X-Forwarded-Proto`` (anyone else may not)."""
        if request.url.scheme == "https":
            return True
        peer = request.client.host if request.client else ""
        try:
            trusted = any(ipaddress.ip_address(peer) in net for net in self.trusted)
        except ValueError:
            trusted = False
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return trusted and proto == "https"


@dataclass
class Ctx:
    """One request as a page sees it."""

    dash: Dash
    request: Request
    session: Session
    account: Account | None
    lang: str
    form: FormData = field(default_factory=FormData)
    web_session: WebSession | None = None  # the signed-in browser's row, if signed in

    @property
    def rt(self) -> Runtime:
        return self.dash.rt

    @property
    def me(self) -> Account:
        assert self.account is not None
        return self.account

    @property
    def ip(self) -> str:
        return client_ip(self.request, self.dash.trusted)

    @property
    def user_agent(self) -> str:
        return self.request.headers.get("user-agent", "")[:512]

    def now(self) -> float:
        return self.rt.clock.now()

    def t(self, text: str, **values: Any) -> str:
        return i18n.translate(self.lang, text, **values)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default)
        return value.strip() if isinstance(value, str) else default

    def arg(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default).strip()

    def flash(self, text: str, kind: str = "ok") -> None:
        """A message shown once on the next page (kept untranslated; shown in the reader's
        language)."""
        self.session.set("flash", [*self.session.get("flash", []), [kind, text]])

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        flashes = self.session.drop("flash") or []
        token = csrf.token(self.session)
        field = Markup(f'<input type="hidden" name="csrf" value="{escape(token)}">')
        html = self.dash.env.get_template(template).render(
            t=self.t,
            lang=self.lang,
            me=self.account,
            csrf_token=token,
            csrf=lambda: field,
            path=self.request.url.path,
            full_path=str(self.request.url.path)
            + (f"?{self.request.url.query}" if self.request.url.query else ""),
            flashes=flashes,
            low_balance=self.low_balance(),
            topup_instructions=self.rt.settings.topup_instructions,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def alert_threshold(self) -> int:
        """Money units at or below which the pages warn about the balance."""
        if self.account is not None and self.account.low_balance_alert is not None:
            return self.account.low_balance_alert
        return to_units(self.rt.settings.low_balance_alert_rub)

    def low_balance(self) -> int | None:
        """The threshold when the signed-in customer's balance is at or below it, else None."""
        if self.account is None or self.account.is_admin:
            return None
        threshold = self.alert_threshold()
        return threshold if self.account.balance <= max(threshold, 0) else None

    def redirect(self, url: str) -> Response:
        return RedirectResponse(url, status_code=303)

    async def start_session(self, account_id: int) -> None:
        """Sign this browser in: a new session row, a new cookie (no fixation)."""
        async with self.rt.db.write() as conn:
            token = await web_sessions.start(
                conn, account_id, now=self.now(), ip=self.ip, user_agent=self.user_agent
            )
        self.session.reset()
        self.session.set("sid", token)

    async def end_session(self) -> None:
        if self.web_session is not None:
            async with self.rt.db.write() as conn:
                await web_sessions.end(conn, self.web_session.account_id, self.web_session.id)
        self.session.reset()

    async def log(self, action: str, account_id: int | None = None) -> None:
        """A row in the account's activity log (shown in the dashboard and by getAccount)."""
        async with self.rt.db.write() as conn:
            await log_action(
                conn,
                account_id or self.me.id,
                action,
                now=self.now(),
                ip=self.ip,
                user_agent=self.user_agent,
            )


View = Callable[[Ctx], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


async def _signed_in(dash: Dash, session: Session, ip: str) -> tuple[Account, WebSession] | None:
    token = session.get("sid")
    if not isinstance(token, str):
        return None
    now = dash.rt.clock.now()
    async with dash.rt.db.read() as conn:
        found = await web_sessions.find(conn, token, max_age_s=MAX_AGE_S, now=now)
        if found is None:
            return None  # signed out, ended from another browser, or never existed
        account = await get_account(conn, found.account_id)
    if account is None:
        return None
    if now - found.last_seen_at >= web_sessions.TOUCH_EVERY_S or found.ip != ip[:64]:
        async with dash.rt.db.write() as conn:
            await web_sessions.touch(conn, found, now=now, ip=ip)
    return account, found


def page(dash: Dash, view: View, *, public: bool = False, admin: bool = False) -> Endpoint:
    """Wrap a page: load the session, check CSRF on POST, require sign-in (and admin)."""

    async def endpoint(request: Request) -> Response:
        session = await dash.sessions.load(request)
        lang = i18n.pick(request.cookies.get(i18n.COOKIE))
        ctx = Ctx(dash, request, session, None, lang)
        signed_in = await _signed_in(dash, session, ctx.ip)
        if signed_in is not None:
            ctx.account, ctx.web_session = signed_in
        account = ctx.account
        secure = dash.is_https(request)
        if request.method == "POST":
            ctx.form = await request.form()
            if not csrf.valid(session, request, ctx.form):
                response: Response = ctx.render(
                    "error.html", status=403, code=403, message=FORM_EXPIRED
                )
                await dash.sessions.save(request, response, session, secure=secure)
                return response
        if not public and account is None:
            if "sid" in session:
                session.reset()
            target = ctx.request.url.path
            response = ctx.redirect(f"{SIGNIN}?next={target}")
        elif admin and account is not None and not account.is_admin:
            response = ctx.render(
                "error.html", status=403, code=403, message="This page is for operators only."
            )
        else:
            try:
                response = await view(ctx)
            except NotFound:
                response = ctx.render(
                    "error.html", status=404, code=404, message="Nothing here, or it is not yours."
                )
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        await dash.sessions.save(request, response, session, secure=secure)
        return response

    return endpoint


def int_param(raw: str | None) -> int:
    """A path id; anything that is not a plain number is simply not found."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound
    return int(raw)
