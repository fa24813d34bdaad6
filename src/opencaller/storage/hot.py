"""Hot statements: built once with SQLAlchemy, run per request with as little Python as possible.

On PostgreSQL a hot statement goes straight to asyncpg, on a small pool of its own: asyncpg
prepares it once per connection, and the request skips SQLAlchemy's execution context and its
greenlet bridge, which on the request path cost more than the statement itself. On SQLite it
runs through SQLAlchemy like any other statement. Either way the caller gets mappings keyed by
column name, so the domain code is the same on both engines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.sql import Executable, visitors
from sqlalchemy.sql.elements import BindParameter

_PG = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]


def _constants_inline(clause: Executable) -> Any:
    """The statement with its constants (``state = 'queued'``) written into the SQL rather
    than sent as parameters: a prepared statement's generic plan then knows the value and
    keeps using the right index as the table grows."""

    def swap(element: Any, **_kw: Any) -> Any:
        if isinstance(element, BindParameter) and not element.required:
            return element.render_literal_execute()
        return None

    return visitors.replacement_traverse(cast(Any, clause), {}, swap)


class Hot:
    """One statement, compiled for asyncpg once at import time."""

    __slots__ = ("clause", "names", "sql")

    def __init__(self, clause: Executable) -> None:
        self.clause = clause
        compiled = _constants_inline(clause).compile(dialect=_PG)
        sql: str = compiled.string
        inlined: set[str] = set()
        for bind, name in compiled.bind_names.items():
            if bind.literal_execute:
                literal = compiled.render_literal_value(bind.value, bind.type)
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", literal)
                inlined.add(name)
        self.sql = sql
        self.names: tuple[str, ...] = tuple(
            n for n in compiled.positiontup or () if n not in inlined
        )

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[n] for n in self.names]
