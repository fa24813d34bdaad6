"""Hot statements: built once with SQLAlchemy, run per request with as little Python as possible.

On PostgreSQL a hot statement goes straight to the asyncpg connection under a pooled
connection (``Database.pg_fetch``): asyncpg prepares it once per connection, and the request
skips SQLAlchemy's execution context and its greenlet bridge, which on the request path cost
more than the statement itself. On SQLite it runs through SQLAlchemy like any other statement.
Either way the caller gets mappings keyed by column name, so the domain code is the same on
both engines.

The SQL is SQLAlchemy's own, compiled once through its public API: a dialect whose statement
compiler (``Dialect.statement_compiler``) renders the statement's constants as literals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import PGCompiler_asyncpg, PGDialect_asyncpg
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter


class _ConstantsInline(PGCompiler_asyncpg):
    """asyncpg's compiler, with the statement's constants (``state = 'queued'``) written
    into the SQL rather than sent as parameters: a prepared statement's generic plan then
    knows the value and keeps using the right index as the table grows.

    A bind whose value is None stays a typed parameter (``$1::BIGINT``): a bare ``NULL`` has
    no type, so PostgreSQL would guess one (text) where it is compared or joined, and the
    caller's value for that name would be ignored. Its default, None, is sent when the
    caller gives none (``SET lease_until = NULL``)."""

    def visit_bindparam(self, bindparam: BindParameter[Any], *args: Any, **kw: Any) -> Any:
        if _constant(bindparam):
            kw["literal_binds"] = True
        return super().visit_bindparam(bindparam, *args, **kw)  # type: ignore[no-untyped-call]


class _HotDialect(PGDialect_asyncpg):
    """Used only to compile hot statements, never to connect."""

    statement_compiler = _ConstantsInline


_PG = _HotDialect()  # type: ignore[no-untyped-call]


def _constant(bind: BindParameter[Any]) -> bool:
    return not bind.required and bind.value is not None and bind.callable is None


class Hot:
    """One statement, compiled for asyncpg once at import time."""

    __slots__ = ("clause", "defaults", "names", "sql")

    def __init__(self, clause: Executable) -> None:
        self.clause = clause
        compiled = clause.compile(dialect=_PG)  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        # The parameters in the order of $1, $2, ... (SQLCompiler.positiontup).
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Parameters the caller may leave out: those built with the value None.
        self.defaults: dict[str, Any] = {
            name: None
            for name, bind in compiled.binds.items()
            if name in self.names and not bind.required and bind.value is None
        }

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        if not self.defaults:
            return [params[n] for n in self.names]
        return [params[n] if n in params else self.defaults[n] for n in self.names]
