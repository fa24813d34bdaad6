"""Bounded request bodies: too large or too slow is refused before the application reads it.

Wraps the whole application (API and dashboard) by composition. A declared ``Content-Length``
over the limit is answered at once, without reading a byte of the body. A body without a
length (``Transfer-Encoding: chunked``) is counted while it streams, and reading stops at the
limit. The whole body must arrive within ``body_timeout_s`` of the end of the headers. Every
refusal, and every answer given before the body was read to its end, closes the connection:
the rest of the body is never read.

The request head (its size and its time) is bounded by the server protocol, see
``opencaller.wire.protocol``; requests without a body pass through untouched.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Code, UcallerError
from .app import error_response

log = logging.getLogger("opencaller.api")

CLOSE = (b"connection", b"close")


class RequestLimits:
    """ASGI middleware. API paths answer the uCaller error object (code 1, HTTP 200, see
    docs/compatibility.md); paths starting with one of ``page_prefixes`` (the dashboard)
    answer a plain 413 (too large) or 408 (too slow)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout_s: float,
        page_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.page_prefixes = page_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked:
            if length is None or length == b"0":
                await self.app(scope, receive, send)  # no body: nothing to bound
                return
            # httptools has checked that Content-Length is a number; anything else is refused.
            declared = int(length) if length.isdigit() else self.max_body_bytes + 1
            if declared > self.max_body_bytes:
                log.info("refused a body of %d bytes before reading it", declared)
                await self._refuse(scope, send, self._too_large(scope))
                return
        await self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a receive that counts the body and stops at the deadline."""
        received = 0
        done = refused = timed_out = False
        waiter: asyncio.Task[object] | None = None  # the task waiting in receive, if any

        def time_up() -> None:
            nonlocal timed_out
            timed_out = True
            if waiter is not None:
                waiter.cancel()

        # One timer for the whole body (cheaper than a timeout around every receive).
        timer = asyncio.get_running_loop().call_later(self.body_timeout_s, time_up)

        async def bounded_receive() -> Message:
            nonlocal received, done, refused, waiter
            if done:  # the body is complete; later calls only wait for a disconnect
                return await receive()
            if not timed_out:
                waiter = asyncio.current_task()
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if not (timed_out and waiter is not None and waiter.uncancel() == 0):
                        raise  # a cancellation of the request itself, not our deadline
                finally:
                    waiter = None
            if timed_out:
                refused = True
                log.info("a request body did not arrive within %s s", self.body_timeout_s)
                raise self._too_slow(scope)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    log.info("refused a streamed body at %d bytes", received)
                    raise self._too_large(scope)
                if not message.get("more_body", False):
                    done = True
                    timer.cancel()
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and (refused or not done):
                # Refused, or answered without reading the whole body (a form post without a
                # form type): the server would otherwise go on reading, and discarding, the
                # rest of the body for as long as the client sends it. Close after the answer.
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            await send(message)

        try:
            await self.app(scope, bounded_receive, closing_send)
        finally:
            timer.cancel()

    def _is_page(self, scope: Scope) -> bool:
        return bool(self.page_prefixes) and str(scope["path"]).startswith(self.page_prefixes)

    def _too_large(self, scope: Scope) -> Exception:
        text = f"The request body is larger than {self.max_body_bytes} bytes"
        if self._is_page(scope):
            return HTTPException(413, text)
        return UcallerError(Code.BAD_REQUEST, text)

    def _too_slow(self, scope: Scope) -> Exception:
        text = f"The request body did not arrive within {self.body_timeout_s:g} seconds"
        if self._is_page(scope):
            return HTTPException(408, text)
        return UcallerError(Code.BAD_REQUEST, text)

    async def _refuse(self, scope: Scope, send: Send, exc: Exception) -> None:
        response: Response
        if isinstance(exc, HTTPException):
            response = PlainTextResponse(exc.detail, status_code=exc.status_code)
        else:
            assert isinstance(exc, UcallerError)
            response = error_response(exc)
        response.headers["connection"] = "close"

        async def no_body() -> Message:  # the response never reads the request
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)
