"""The whole web application: the uCaller API plus the dashboard and the admin."""

from __future__ import annotations

from starlette.middleware import Middleware

from .dashboard.routes import routes as dashboard_routes
from .runtime import Runtime
from .security_headers import SecurityHeaders
from .wire.app import ApiApp, create_api_app


def create_app(rt: Runtime, *, dashboard: bool = True) -> ApiApp:
    """``/dashboard``, ``/admin`` and ``/static`` (unless ``dashboard`` is False), then the API,
    which answers every other path."""
    # Pages, static files, /health and /metrics; the uCaller methods bypass the middleware
    # stack (wire/app.py) and set nosniff themselves.
    return create_api_app(
        rt, dashboard_routes(rt) if dashboard else None, [Middleware(SecurityHeaders)]
    )
