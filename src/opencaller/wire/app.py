"""The HTTP application: uCaller routes, health, and one error shape for everything.

Routing is deliberately forgiving (spec §1.2): ``/v1.0/initCall``, ``/v1.0/initCall/``,
``/initCall``, ``//v1.0//initCall`` all reach the same handler; nothing ever redirects.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import Code, UcallerError
from ..runtime import Runtime
from .auth import credentials
from .methods import METHODS
from .params import read_args

log = logging.getLogger("opencaller.api")

JSON_TYPE = "application/json; charset=utf-8"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def json_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=200, media_type=JSON_TYPE, headers=headers)


def error_response(err: UcallerError) -> Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return json_response(err.body(), headers)


def method_name(path: str) -> str | None:
    """``/v1.0/initCall/`` -> ``initcall``; None for the root or deeper paths."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0].lower() in ("v1.0", "v1"):
        parts = parts[1:]
    if len(parts) != 1:
        return None
    return parts[0].lower()


def client_ip(
    request: Request, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    peer = request.client.host if request.client else ""
    if trusted and peer:
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return peer
        if any(addr in net for net in trusted):
            forwarded = request.headers.get("x-forwarded-for", "")
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            if hops:
                return hops[-1] if len(hops) == 1 else _first_untrusted(hops, trusted)
    return peer


def _first_untrusted(hops: list[str], trusted: list[Any]) -> str:
    for hop in reversed(hops):
        try:
            if not any(ipaddress.ip_address(hop) in net for net in trusted):
                return hop
        except ValueError:
            return hop
    return hops[0]


def api_endpoint(rt: Runtime) -> Callable[[Request], Any]:
    trusted = [ipaddress.ip_network(n, strict=False) for n in rt.settings.trusted_proxies]

    async def endpoint(request: Request) -> Response:
        name = method_name(request.url.path)
        if name == "health":
            return await health(rt)
        try:
            if name is None or name not in METHODS or request.method not in ("GET", "POST"):
                raise UcallerError(Code.METHOD_NOT_SUPPORTED)
            args = await read_args(request)
            now = rt.clock.now()
            key, service_id = credentials(args)
            caller = await rt.auth.authenticate(key, service_id, client_ip(request, trusted), now)
            body = await METHODS[name](rt, caller, args)
            return json_response(body)
        except UcallerError as err:
            return error_response(err)
        except Exception:
            log.exception("unhandled error", extra={"path": request.url.path})
            return error_response(UcallerError(Code.INTERNAL))

    return endpoint


async def health(rt: Runtime) -> Response:
    database = await rt.db.ping()
    try:
        providers = await rt.provider.healthy()
    except Exception:
        providers = False
    return json_response(
        {"status": database and providers, "database": database, "providers": providers}
    )


def create_app(
    rt: Runtime, extra_routes: list[BaseRoute] | None = None, *, dashboard: bool = True
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    endpoint = api_endpoint(rt)
    routes: list[BaseRoute] = list(extra_routes or [])
    if dashboard:  # /dashboard, /admin and /static; imported here as it imports this module
        from ..dashboard import routes as dashboard_routes

        routes.extend(dashboard_routes(rt))
    routes.append(Route("/{path:path}", endpoint, methods=ALL_METHODS))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = rt
    return app
