"""Which errors mean "the database is unreachable right now" rather than "this is a bug".

An outage (server stopped, restarting, frozen, failing over) shows up as refused or reset
connections, connections closed under a statement, and timeouts. Callers answer those with
"retry later", keep what they must write for later, and log one line instead of a traceback.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    TimeoutError,  # connect or statement timeout (a frozen server)
    OSError,  # refused, reset, unreachable
    sa_exc.TimeoutError,  # no free connection in SQLAlchemy's pool in time
    asyncpg.PostgresConnectionError,  # includes CannotConnectNowError (starting, stopping)
    asyncpg.InterfaceError,  # connection closed, or left mid-operation by a lost server
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby answered during a failover
)


def is_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached now."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, _UNAVAILABLE):
            return True
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False


def describe(exc: BaseException) -> str:
    """One line for the log: the error's type and first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
