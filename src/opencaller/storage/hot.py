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
    keeps using the right index as the table grows.

    A bind whose value is None stays a typed parameter (``$1::BIGINT``): a bare ``NULL`` has
    no type, so PostgreSQL would guess one (text) where it is compared or joined, and the
    caller's value for that name would be ignored. Its default, None, is sent when the
    caller gives none (``SET lease_until = NULL``)."""

    def swap(element: Any, **_kw: Any) -> Any:
        if (
            isinstance(element, BindParameter)
            and not element.required
            and element.value is not None
        ):
            return element.render_literal_execute()
        return None

    return visitors.replacement_traverse(cast(Any, clause), {}, swap)


class Hot:
    """One statement, compiled for asyncpg once at import time."""

    __slots__ = ("clause", "defaults", "names", "sql")

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
        # Parameters the caller may leave out: those built with the value None.
        self.defaults: dict[str, Any] = {
            name: None
            for bind, name in compiled.bind_names.items()
            if name in self.names and not bind.required and bind.value is None
        }

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        if not self.defaults:
            return [params[n] for n in self.names]
        return [params[n] if n in params else self.defaults[n] for n in self.names]
