"""The API's front (wire/app.py ``ApiApp``): uCaller method calls go straight to their endpoint,
everything else to the Starlette app it owns, with its routes, middleware and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from opencaller.wire.app import ApiApp, json_response

from .support import Api


async def test_method_calls_skip_the_page_middleware(api: Api) -> None:
    """The dashboard's headers (CSP) are for pages; a method call answers with nosniff only,
    and the requests beside it still go through the middleware."""
    r = await api.client.get("/v1.0/getBalance", params=api.creds)
    assert r.json()["status"] is True
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in r.headers
    for path in ("/health", "/livez"):
        page = await api.client.get(path)
        assert page.status_code == 200, path
        assert "content-security-policy" in page.headers, path


class Tagged:
    """A middleware that marks every answer it wraps."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tag(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-tagged", b"1")]}
            await send(message)

        await self.app(scope, receive, tag)


def front(events: list[str]) -> ApiApp:
    async def method(request: Request) -> Response:
        assert isinstance(request.app, Starlette)  # request.app as the router would set it
        return json_response({"path": request.url.path, "verb": request.method})

    async def livez(request: Request) -> Response:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("started")
        yield
        events.append("stopped")

    app = Starlette(
        routes=[Route("/livez", livez, methods=["GET"])],
        middleware=[Middleware(Tagged)],
        lifespan=lifespan,
    )
    return ApiApp(method, app)


async def test_the_front_routes_by_method_name_and_verb() -> None:
    transport = httpx.ASGITransport(app=front([]))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        call = await client.get("/v1.0/initCall/")
        odd_verb = await client.request("TRACE", "/livez")
        livez = await client.get("/livez")
    assert call.json() == {"path": "/v1.0/initCall/", "verb": "GET"}
    assert "x-tagged" not in call.headers  # straight to the endpoint
    assert odd_verb.json() == {"path": "/livez", "verb": "TRACE"}  # the router would say 405
    assert livez.text == "ok" and livez.headers["x-tagged"] == "1"  # through the Starlette app


async def test_the_front_passes_the_lifespan_to_starlette() -> None:
    events: list[str] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message["type"])

    await front(events)({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert events == ["started", "stopped"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
