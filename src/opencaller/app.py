"""The whole web application: the uCaller API plus the dashboard and the admin."""

from __future__ import annotations

from starlette.applications import Starlette

from .dashboard.routes import routes as dashboard_routes
from .runtime import Runtime
from .security_headers import SecurityHeaders
from .wire.app import create_api_app


def create_app(rt: Runtime, *, dashboard: bool = True) -> Starlette:
    """``/dashboard``, ``/admin`` and ``/static`` (unless ``dashboard`` is False), then the API,
    which answers every other path."""
    app = create_api_app(rt, dashboard_routes(rt) if dashboard else None)
    # Pages, static files, /health and /metrics; the uCaller methods bypass the middleware
    # stack (wire/app.py) and set nosniff themselves.
    app.add_middleware(SecurityHeaders)
    return app
