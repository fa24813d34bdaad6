"""The HTTP application: uCaller routes, health, and one error shape for everything.

Routing is deliberately forgiving (spec §1.2): ``/v1.0/initCall``, ``/v1.0/initCall/``,
``/initCall``, ``//v1.0//initCall`` all reach the same handler; nothing ever redirects.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..domain.fraud.origin import ORIGIN
from ..domain.outages import describe, is_unavailable
from ..errors import Code, UcallerError
from ..observability import metrics, probes
from ..runtime import Runtime
from .auth import credentials
from .methods import METHODS
from .openapi import openapi_routes
from .params import read_args

log = logging.getLogger("opencaller.api")

JSON_TYPE = "application/json; charset=utf-8"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def json_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    headers = {**NOSNIFF, **headers} if headers else NOSNIFF
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
                return _first_untrusted(hops, trusted)
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
        name = method_name(request.scope["path"])
        if name == "health" and request.method in ALL_METHODS:
            return await health(rt)
        started = time.perf_counter()
        label = name if name in METHODS else "unknown"
        code = "ok"
        try:
            if name is None or name not in METHODS or request.method not in ("GET", "POST"):
                raise UcallerError(Code.METHOD_NOT_SUPPORTED)
            args = await read_args(request, max_fields=rt.settings.max_form_fields)
            now = rt.clock.now()
            key, service_id = credentials(args)
            ip = client_ip(request, trusted)
            ORIGIN.set(ip)  # the fraud guard counts calls per client address
            caller = await rt.auth.authenticate(key, service_id, ip, now)
            body = await METHODS[name](rt, caller, args)
            return json_response(body)
        except UcallerError as err:
            code = str(int(err.code))
            return error_response(err)
        except Exception as exc:
            code = str(int(Code.INTERNAL))
            if is_unavailable(exc):  # an outage: "retry later", one line rather than a traceback
                log.warning("database unavailable: %s", describe(exc), extra={"path": name})
            else:
                log.exception("unhandled error", extra={"path": request.url.path})
            return error_response(UcallerError(Code.INTERNAL))
        finally:
            metrics.REQUESTS.labels(label, code).inc()
            metrics.LATENCY.labels(label).observe(time.perf_counter() - started)

    return endpoint


async def health(rt: Runtime) -> Response:
    database, providers = await rt.healthy()
    return json_response(
        {"status": database and providers, "database": database, "providers": providers}
    )


class ApiApp:
    """The API's ASGI app: uCaller method calls go straight to their endpoint, everything
    else (pages, /health, /metrics, lifespan) to the Starlette app it owns. The endpoint
    answers every error itself, so the router and the middleware stack would only add time
    to the busiest requests."""

    def __init__(self, api: Callable[[Request], Awaitable[Response]], app: Starlette) -> None:
        self.api = api
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _api_request(scope):
            scope["app"] = self.app  # what Starlette would set: request.app is the same app
            response = await self.api(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _api_request(scope: Scope) -> bool:
    """A uCaller method, or a request the router would answer in plain text: a verb no
    route takes (``TRACE``, ``FOO``), or a target that is not a path (``OPTIONS *``); the
    endpoint answers those with the uCaller error object 405."""
    path = scope["path"]
    return (
        method_name(path) in METHODS
        or not path.startswith("/")
        or scope["method"] not in ALL_METHODS
    )


def create_api_app(
    rt: Runtime,
    extra_routes: list[BaseRoute] | None = None,
    middleware: list[Middleware] | None = None,
) -> ApiApp:
    """The uCaller API, /health, /metrics and /livez; ``extra_routes`` are matched first, and
    ``middleware`` wraps every request but the uCaller method calls."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    endpoint = api_endpoint(rt)
    queue = metrics.QueueDepth()
    probed = metrics.Probes()

    async def metrics_endpoint(request: Request) -> Response:
        await probes.measure(rt.db, rt.redis, queue, probed)
        return Response(metrics.render(queue, probed), media_type=metrics.CONTENT_TYPE)

    async def livez(request: Request) -> Response:
        # Liveness for load balancers: answers without touching the database.
        return PlainTextResponse("ok")

    routes: list[BaseRoute] = list(extra_routes or [])
    routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    routes.append(Route("/livez", livez, methods=["GET", "HEAD"]))
    routes.extend(openapi_routes())  # /openapi.json and /docs, open like /health
    routes.append(Route("/{path:path}", endpoint, methods=ALL_METHODS))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.runtime = rt
    return ApiApp(endpoint, app)
