"""ASGI entry points: ``opencaller.server:build_app`` is what uvicorn imports for each worker."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from .app import create_app
from .config import load_settings
from .observability.logs import setup_logging
from .runtime import Runtime


def build_app() -> Starlette:
    """Factory for uvicorn (``--factory``); settings come from the environment/config file."""
    settings = load_settings()
    setup_logging(settings.log_level, json=settings.log_json)
    dispatch = os.environ.get("OPENCALLER_NO_DISPATCH", "") not in ("1", "true")
    return create_app(Runtime(settings, dispatch=dispatch))
