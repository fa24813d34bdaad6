"""Hot statements: built once with SQLAlchemy, run per request with as little Python as possible.

On PostgreSQL a hot statement goes straight to asyncpg, on a small pool of its own: asyncpg
prepares it once per connection, and the request skips SQLAlchemy's execution context and its
greenlet bridge, which on the request path cost more than the statement itself. On SQLite it
runs through SQLAlchemy like any other statement. Either way the caller gets mappings keyed by
column name, so the domain code is the same on both engines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.sql import Executable

_PG = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]


class Hot:
    """One statement, compiled for asyncpg once at import time."""

    __slots__ = ("clause", "defaults", "names", "sql")

    def __init__(self, clause: Executable) -> None:
        self.clause = clause
        compiled = clause.compile(dialect=_PG)  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # literal() values are bind parameters too: they come with the statement
        self.defaults: dict[str, Any] = {
            name: bind.value for bind, name in compiled.bind_names.items() if not bind.required
        }

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        defaults = self.defaults
        return [params[n] if n in params else defaults[n] for n in self.names]
