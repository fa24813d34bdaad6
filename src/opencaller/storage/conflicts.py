"""Driver errors the domain needs to recognise, without knowing the driver."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import IntegrityError


def is_unique_violation(exc: BaseException) -> bool:
    """A write refused because a row with the same unique key exists: through SQLAlchemy on
    either engine, or from asyncpg directly (storage/hot.py's statements)."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return True
    if isinstance(exc, IntegrityError):
        orig = exc.orig
        if isinstance(orig, asyncpg.UniqueViolationError):
            return True
        cause = getattr(orig, "__cause__", None)  # SQLAlchemy's asyncpg adapter wraps it
        if isinstance(cause, asyncpg.UniqueViolationError):
            return True
        # sqlite3 has no subclass per error: its extended code tells
        return getattr(orig, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_UNIQUE"
    return False
