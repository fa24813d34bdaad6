"""The client address of the request being served, for the guard's per-address signal.

The HTTP layer knows it (X-Forwarded-For from trusted proxies, wire/app.py ``client_ip``)
and sets it once per request; the domain reads it here rather than through every signature
between the two (initCall's is shared by many callers)."""

from __future__ import annotations

from contextvars import ContextVar

ORIGIN: ContextVar[str] = ContextVar("opencaller_request_origin", default="")
