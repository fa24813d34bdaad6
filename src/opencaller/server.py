"""ASGI entry points: ``opencaller.server:build_app`` is what uvicorn imports for each worker."""

from __future__ import annotations

from starlette.types import ASGIApp

from .app import create_app
from .config import load_settings
from .observability.logs import setup_logging
from .runtime import Runtime
from .wire import protocol
from .wire.limits import RequestLimits

# Served by the dashboard: refusals there are plain HTTP statuses, not the uCaller error object.
PAGE_PREFIXES = ("/dashboard", "/admin", "/static")


def build_app() -> ASGIApp:
    """Factory for uvicorn (``--factory``); settings come from the environment/config file."""
    settings = load_settings()
    setup_logging(settings.log_level, json=settings.log_json)
    protocol.configure(settings)  # uvicorn loads the app before it accepts connections
    return RequestLimits(
        create_app(Runtime(settings, dispatch=not settings.no_dispatch)),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        page_prefixes=PAGE_PREFIXES,
    )
