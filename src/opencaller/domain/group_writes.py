"""PostgreSQL: new authorizations written many per statement (limits kept in Redis).

Every paid initCall of an account updates that account's balance row, so concurrent initCalls
of one customer would queue on it, one statement and one commit each. The requests that
arrive while a write is in flight (domain/batches.py) are written here by one statement: it
takes each account's total, inserts every authorization and its ledger row, and commits once.

A batch never changes an answer: if an account's balance does not cover its whole share of
the batch, that account's requests are written one by one, in arrival order, so exactly the
ones the money covers go through. If the statement fails (a duplicate ``unique`` racing in
from another node), domain/batches.py writes every request on its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import String, column
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from ..storage.database import Database, Row
from ..storage.tables import authorizations
from . import billing
from .records import NEW_COLUMNS

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _array_type(t: TypeEngine[Any]) -> str:
    # Strings as text[]: the columns' own lengths are checked by the INSERT anyway.
    return "text" if isinstance(t, String) else t.compile(dialect=_PG)


def _statement() -> str:
    """One array parameter per new column, unnested in arrival order (``ord``)."""
    types = [_array_type(authorizations.c[n].type) for n in NEW_COLUMNS]
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
    names = ", ".join(NEW_COLUMNS)
    now = f"${len(NEW_COLUMNS) + 1}"
    reason = billing.charge_reason_sql(column("kind"), column("id")).compile(
        dialect=_PG, compile_kwargs={"literal_binds": True}
    )
    return f"""
WITH req AS (
  SELECT * FROM unnest({arrays}) WITH ORDINALITY AS r({names}, ord)
),
due AS (SELECT account_id, sum(cost) AS total FROM req GROUP BY account_id),
taken AS (
  UPDATE accounts AS acc SET balance = acc.balance - due.total, updated_at = {now}
  FROM due
  WHERE acc.id = due.account_id AND due.total > 0 AND acc.balance >= due.total
  RETURNING acc.id, acc.balance + due.total AS before
),
priced AS (
  SELECT req.*,
         coalesce(taken.before, acc.balance)
           - coalesce(sum(req.cost) OVER (PARTITION BY req.account_id ORDER BY req.ord
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                      0) AS balance_before
  FROM req
  JOIN due ON due.account_id = req.account_id
  JOIN accounts AS acc ON acc.id = req.account_id
  LEFT JOIN taken ON taken.id = req.account_id
  WHERE due.total = 0 OR taken.id IS NOT NULL
),
new AS (
  INSERT INTO authorizations ({names}, balance_before)
  SELECT {names}, balance_before FROM priced ORDER BY ord
  RETURNING *
),
entry AS (
  INSERT INTO ledger ({", ".join(billing.LEDGER_COLUMNS)})
  SELECT account_id, 'charge', -cost, balance_before - cost, id, kind, 'system', {reason},
         created_at
  FROM new WHERE cost > 0
)
SELECT * FROM new
"""


_INSERT_MANY = _statement()

# What tells two requests' rows apart (identical keys mean identical rows but for the id and
# the balance before, which follow arrival order like the ids).
_KEY = (
    "service_id",
    "account_id",
    "direction",
    "phone",
    "code",
    "created_at",
    "unique_key",
    "kind",
    "first_id",
    "confirmation_number",
)


def _key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(values[k] for k in _KEY)


async def write_many(db: Database, batch: list[dict[str, Any]]) -> list[Row | None]:
    """Each new row's values written, in order: its row, or None for the rows of an account
    whose balance did not cover its share (the caller writes those one by one)."""
    columns = [[values[c] for values in batch] for c in NEW_COLUMNS]
    written = await db.pg_fetch(_INSERT_MANY, *columns, batch[0]["created_at"])
    by_key: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in sorted(written, key=lambda r: int(r["id"])):
        by_key[_key(row)].append(row)
    return [found.pop(0) if (found := by_key.get(_key(v))) else None for v in batch]
