"""Statements of the write paths, run on a synchronous ``Connection`` on either engine.

Code written once for both engines (domain/new_authorizations.py) runs its statements through
``rows``. In SQLite's writer thread (storage/sqlite_writer.py, the pysqlite driver) a
statement goes straight to the sqlite3 connection under the transaction SQLAlchemy began:
compiled once with SQLAlchemy, its results typed by the columns' own result processors. That
skips SQLAlchemy's execution context, which cost several times the statement itself (~60 µs
against ~10 µs) while the writer thread holds SQLite's only write lock. Anywhere else
(PostgreSQL, aiosqlite under ``run_sync``) ``rows`` is plain ``Connection.execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

_SQLITE = sqlite.dialect(paramstyle="named")

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # The values of the statement's own literals (``= 'out'``) and defaults (``= NULL``).
    constants: dict[str, Any]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # parameter, its type's processor
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # column position, processor
    direct: bool  # False: parameters expanded per call (IN lists), left to SQLAlchemy


# Keyed by the statement's id; the statement is kept alongside, so the id stays its own.
_compiled: dict[int, tuple[Executable, _Compiled]] = {}


def _compile(clause: Executable) -> _Compiled:
    hit = _compiled.get(id(clause))
    if hit is not None:
        return hit[1]
    compiled = cast(SQLCompiler, cast(ClauseElement, clause).compile(dialect=_SQLITE))
    params = compiled.params
    constants = {n: params[n] for b, n in compiled.bind_names.items() if not b.required}
    binds = []
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
        if process is not None:
            binds.append((name, process))
    described = getattr(clause, "returning_column_descriptions", None) or getattr(
        clause, "column_descriptions", []
    )
    results = []
    for i, column in enumerate(described):
        process = column["type"].dialect_impl(_SQLITE).result_processor(_SQLITE, None)
        if process is not None:
            results.append((i, process))
    direct = not (compiled.post_compile_params or compiled.literal_execute_params)
    found = _Compiled(str(compiled), constants, tuple(binds), tuple(results), direct)
    _compiled[id(clause)] = (clause, found)
    return found


def rows(conn: Connection, clause: Executable, params: Mapping[str, Any]) -> list[Row]:
    """The statement's rows, as dicts keyed by column name (label), in column order."""
    if conn.dialect.driver != "pysqlite" or not (c := _compile(clause)).direct:
        result = conn.execute(clause, dict(params))
        return [dict(r._mapping) for r in result] if result.returns_rows else []
    values = {**c.constants, **params}
    for name, process in c.binds:
        if name in values:
            values[name] = process(values[name])
    sqlite3_conn = conn.connection.driver_connection
    assert sqlite3_conn is not None
    cursor = sqlite3_conn.execute(c.sql, values)
    try:
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        out = []
        for raw in cursor.fetchall():
            row = list(raw)
            for i, process in c.results:
                row[i] = process(row[i])
            out.append(dict(zip(names, row, strict=True)))
        return out
    finally:
        cursor.close()


def first(conn: Connection, clause: Executable, params: Mapping[str, Any]) -> Row | None:
    found = rows(conn, clause, params)
    return found[0] if found else None
