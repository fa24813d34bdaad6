"""Every dashboard route, assembled from the views for the ASGI app."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..runtime import Runtime
from .views import (
    admin_accounts,
    admin_fraud,
    admin_tariffs,
    admin_traffic,
    auth,
    balance,
    fraud,
    log,
    security,
    services,
    stats,
)
from .web import Dash

STATIC = Path(__file__).parent / "static"


def routes(rt: Runtime) -> list[BaseRoute]:
    """Every dashboard route; they go before the API's catch-all route."""
    dash = Dash(rt)
    out: list[BaseRoute] = []
    for area in (
        auth,
        services,
        log,
        stats,
        balance,
        security,
        admin_traffic,
        admin_accounts,
        admin_tariffs,
        fraud,
        admin_fraud,
    ):
        out.extend(area.routes(dash))
    out.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    return out
