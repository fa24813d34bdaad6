"""uvicorn's httptools protocol with a bounded request head.

httptools (llhttp) accepts a request line and headers of any size, and uvicorn gives a
connection unlimited time to send them (its keep-alive timeout only runs between two requests).
This protocol adds both bounds, before the application is involved:

- a request line plus headers of more than ``max_header_bytes``: ``431`` and close, as soon
  as the limit is crossed (at most one read of the socket, 256 KiB, is held beyond it);
- no complete head within ``header_timeout_s`` of connecting (or of the first byte of the
  next request): close, with a ``408`` if part of a head had arrived.

Bodies are bounded by ``opencaller.wire.limits``. The limits are class attributes set once per
process by :func:`configure` (``opencaller.server.build_app``), before any connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings

log = logging.getLogger("opencaller.api")


def _answer(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


class HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a head over the limit."""


class BoundedHttpProtocol(HttpToolsProtocol):
    max_header_bytes: ClassVar[int] = Settings.model_fields["max_header_bytes"].default
    header_timeout_s: ClassVar[float] = Settings.model_fields["header_timeout_s"].default
    keepalive_timeout_s: ClassVar[float] = Settings.model_fields["keepalive_timeout_s"].default

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # call_later takes fractional seconds; uvicorn's own option is whole seconds.
        self.timeout_keep_alive = self.keepalive_timeout_s  # type: ignore[assignment]
        self._in_head = True  # between the start of a request and the end of its headers
        self._head_bytes = 0  # bytes received while the head is incomplete
        self._chunk = 0  # size of the read being parsed
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            # Bytes on an idle connection: uvicorn has just stopped its keep-alive timer, and
            # blank lines between requests never begin a message; the head's clock runs.
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)
        self._chunk = len(data)
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # A head still incomplete after this chunk: all of the chunk was head (but for the
            # end of a pipelined request before it). This bounds what httptools holds of a
            # header that is still arriving; a head that ends is counted exactly below.
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        log.info("refused a request head of more than %d bytes", self.max_header_bytes)
        self._stop_head_timer()
        text = f"Request headers larger than {self.max_header_bytes} bytes".encode()
        self.transport.write(_answer(b"431 Request Header Fields Too Large", text))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        if self._head_bytes + self._chunk > self.max_header_bytes:
            # A head that ended in this read may be over the limit: count it exactly.
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.max_header_bytes:
                self._head_too_large = True
                raise HeadTooLarge  # stops the parser; uvicorn then calls send_400_response
        super().on_headers_complete()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:  # part of a head arrived; an idle new connection just closes
            text = f"Request headers not received within {self.header_timeout_s:g} s".encode()
            self.transport.write(_answer(b"408 Request Timeout", text))
        self.transport.close()


def configure(settings: Settings) -> None:
    """Set this process's limits (uvicorn creates one protocol object per connection)."""
    BoundedHttpProtocol.max_header_bytes = settings.max_header_bytes
    BoundedHttpProtocol.header_timeout_s = settings.header_timeout_s
    BoundedHttpProtocol.keepalive_timeout_s = settings.keepalive_timeout_s
