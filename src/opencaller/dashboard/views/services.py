"""The overview and services: create, key, enable/disable, archive, settings."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...domain import reports, status_events
from ...domain.accounts import Service, create_service, regenerate_key, update_service
from .. import fmt
from ..web import Ctx, Dash, NotFound, int_param, page


async def _service(ctx: Ctx) -> Service:
    sid = int_param(ctx.request.path_params.get("sid"))
    async with ctx.rt.db.read() as conn:
        service = await reports.owned_service(conn, ctx.me.id, sid)
    if service is None:
        raise NotFound
    return service


async def overview(ctx: Ctx) -> Response:
    async with ctx.rt.db.read() as conn:
        services = await reports.account_services(conn, ctx.me.id)
    return ctx.render(
        "overview.html",
        active=[s for s in services if not s.archived],
        archived=[s for s in services if s.archived],
        errors=[],
        name="",
        direction="",
    )


async def create(ctx: Ctx) -> Response:
    name, direction = ctx.field("name"), ctx.field("use_direction")
    errors = []
    if not name or len(name) > 128:
        errors.append("Give the service a name (up to 128 characters).")
    if len(direction) > 256:
        errors.append("The use direction is too long (up to 256 characters).")
    if errors:
        async with ctx.rt.db.read() as conn:
            services = await reports.account_services(conn, ctx.me.id)
        return ctx.render(
            "overview.html",
            status=400,
            active=[s for s in services if not s.archived],
            archived=[s for s in services if s.archived],
            errors=errors,
            name=name,
            direction=direction,
        )
    async with ctx.rt.db.write() as conn:
        sid, _ = await create_service(
            conn, account_id=ctx.me.id, name=name, use_direction=direction, now=ctx.now()
        )
    await ctx.log(f"service created: #{sid} {name}")
    ctx.flash("Service created.")
    return ctx.redirect(f"/dashboard/services/{sid}")


def _settings_form(service: Service) -> dict[str, Any]:
    s = service.settings
    return {
        "allowed_countries": ", ".join(s.allowed_countries),
        "hourly_limit": str(s.hourly_limit or ""),
        "ip_allowlist": "\n".join(s.ip_allowlist),
        "voice_enabled": s.voice_enabled,
        "rps_limit": str(s.rps_limit),
        "test_mode": service.test_mode,
    }


async def show(ctx: Ctx) -> Response:
    service = await _service(ctx)
    return ctx.render("service.html", service=service, form=_settings_form(service), errors=[])


async def _change(ctx: Ctx, service: Service, action: str, **values: Any) -> None:
    async with ctx.rt.db.write() as conn:
        await update_service(conn, service.id, **values)
    ctx.rt.auth.forget(service.id)  # the API must see the change now, not after its cache
    await ctx.log(f"{action}: #{service.id} {service.name}")


async def new_key(ctx: Ctx) -> Response:
    service = await _service(ctx)
    async with ctx.rt.db.write() as conn:
        await regenerate_key(conn, service.id)
    ctx.rt.auth.forget(service.id)
    await ctx.log(f"key regenerated: #{service.id} {service.name}")
    ctx.flash("A new key was issued. The old one no longer works.")
    return ctx.redirect(f"/dashboard/services/{service.id}")


async def toggle(ctx: Ctx) -> Response:
    service = await _service(ctx)
    enable = ctx.field("enabled") == "1"
    await _change(ctx, service, "service enabled" if enable else "service disabled", enabled=enable)
    ctx.flash("Service enabled." if enable else "Service disabled.")
    return ctx.redirect(f"/dashboard/services/{service.id}")


async def archive(ctx: Ctx) -> Response:
    service = await _service(ctx)
    archived = ctx.field("archived") == "1"
    await _change(
        ctx, service, "service archived" if archived else "service restored", archived=archived
    )
    ctx.flash("Service archived." if archived else "Service restored.")
    return ctx.redirect(f"/dashboard/services/{service.id}")


async def settings(ctx: Ctx) -> Response:
    service = await _service(ctx)
    form: dict[str, Any] = {
        "allowed_countries": ctx.field("allowed_countries"),
        "hourly_limit": ctx.field("hourly_limit"),
        "ip_allowlist": ctx.field("ip_allowlist"),
        "voice_enabled": ctx.field("voice_enabled") == "1",
        "rps_limit": ctx.field("rps_limit"),
        "test_mode": ctx.field("test_mode") == "1",
    }
    errors: list[str] = []
    countries, bad = fmt.parse_countries(form["allowed_countries"])
    if bad:
        errors.append("Unknown country codes: " + ", ".join(bad))
    networks, bad = fmt.parse_networks(form["ip_allowlist"])
    if bad:
        errors.append("Not an IP address or network: " + ", ".join(bad))
    hourly = None
    if form["hourly_limit"]:
        hourly = fmt.parse_int(form["hourly_limit"], low=0, high=10_000_000)
        if hourly is None:
            errors.append("The hourly limit must be a whole number, or empty for none.")
    rps = fmt.parse_int(form["rps_limit"], low=1, high=10_000)
    if rps is None:
        errors.append("Requests per second must be a whole number from 1 to 10000.")
    if errors or rps is None:
        return ctx.render("service.html", status=400, service=service, form=form, errors=errors)
    # A copy, so settings this form does not show (verifyCode's) are kept.
    new = service.settings.model_copy(
        update={
            "allowed_countries": countries,
            "hourly_limit": hourly or None,
            "ip_allowlist": networks,
            "voice_enabled": bool(form["voice_enabled"]),
            "rps_limit": rps,
        }
    )
    await _change(
        ctx, service, "service settings changed", settings=new, test_mode=bool(form["test_mode"])
    )
    ctx.flash("Settings saved.")
    return ctx.redirect(f"/dashboard/services/{service.id}")


async def status_url(ctx: Ctx) -> Response:
    """Status webhooks: where they go, or off (empty)."""
    service = await _service(ctx)
    url = ctx.field("status_url")
    refusal = status_events.status_url_refusal(url, ctx.rt.webhook_destinations) if url else None
    if refusal is not None:
        errors = [ctx.t("This status URL cannot be used: {why}", why=refusal)]
        return ctx.render(
            "service.html",
            status=400,
            service=service,
            form=_settings_form(service),
            errors=[],
            status_errors=errors,
            status_url=url,
        )
    async with ctx.rt.db.write() as conn:
        await status_events.set_status_url(conn, service.id, url or None)
    ctx.rt.auth.forget(service.id)
    await ctx.log(f"status webhooks {'set' if url else 'off'}: #{service.id} {url}")
    ctx.flash("Status webhooks are on." if url else "Status webhooks are off.")
    return ctx.redirect(f"/dashboard/services/{service.id}")


def routes(dash: Dash) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/dashboard", page(dash, overview)),
        Route("/dashboard/", page(dash, overview)),
        Route("/dashboard/services", page(dash, create), methods=post),
        Route("/dashboard/services/{sid}", page(dash, show)),
        Route("/dashboard/services/{sid}/key", page(dash, new_key), methods=post),
        Route("/dashboard/services/{sid}/enabled", page(dash, toggle), methods=post),
        Route("/dashboard/services/{sid}/archived", page(dash, archive), methods=post),
        Route("/dashboard/services/{sid}/settings", page(dash, settings), methods=post),
        Route("/dashboard/services/{sid}/status-url", page(dash, status_url), methods=post),
    ]
