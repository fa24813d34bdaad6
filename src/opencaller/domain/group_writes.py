"""New authorizations written many per statement (PostgreSQL, limits kept in Redis).

Every paid initCall of an account updates that account's balance row, so concurrent initCalls
of one customer queue on it, one statement and one commit each. Here the initCalls that arrive
while a write is in flight are written together by the next one: one statement takes the
account's total, inserts every authorization and its ledger row, and commits once — the way a
database groups commits, applied to the row everyone waits for. Alone, a request is written
by the one-row statement, exactly as before.

A batch never changes an answer: if an account's balance does not cover its whole share of
the batch, that account's requests are written one by one, in arrival order, so exactly the
ones the money covers go through; if the statement fails (a duplicate ``unique`` racing in
from another node), every request of the batch is written on its own and meets its own error.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ..storage.database import Database, Row
from .records import INSERT, INSERT_CHARGED

# Only initCall rows (no repeat, no inbound): their constant columns are written in the SQL.
_INSERT_MANY = """
WITH req AS (
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::text[], $9::bool[], $10::bigint[],
                       $11::float8[])
    WITH ORDINALITY AS r(service_id, account_id, phone, code, client, unique_key, kind,
                         country_iso, is_test, cost, created_at, ord)
),
due AS (SELECT account_id, sum(cost) AS total FROM req GROUP BY account_id),
taken AS (
  UPDATE accounts AS acc SET balance = acc.balance - due.total, updated_at = $12
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
  INSERT INTO authorizations (service_id, account_id, direction, phone, code, client,
                              unique_key, kind, country_iso, is_test, cost, refunded,
                              created_at, repeat_index, repeat_count, call_status,
                              dispatch_state, balance_before)
  SELECT service_id, account_id, 'out', phone, code, client, unique_key, kind, country_iso,
         is_test, cost, false, created_at, 0, 0, -1, 'queued', balance_before
  FROM priced ORDER BY ord
  RETURNING *
),
entry AS (
  INSERT INTO ledger (account_id, kind, amount, balance_after, authorization_id, channel,
                      actor, reason, created_at)
  SELECT account_id, 'charge', -cost, balance_before - cost, id, kind, 'system',
         kind || ' #' || id, created_at
  FROM new WHERE cost > 0
)
SELECT * FROM new
"""

_ARRAYS = (
    "service_id",
    "account_id",
    "phone",
    "code",
    "client",
    "unique_key",
    "kind",
    "country_iso",
    "is_test",
    "cost",
    "created_at",
)
# What tells two requests' rows apart (identical keys mean identical rows but for the id).
_KEY = ("service_id", "account_id", "phone", "code", "created_at", "unique_key", "kind")

Pending = tuple[dict[str, Any], "asyncio.Future[Row | None]"]


def _key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(values[k] for k in _KEY)


class AuthorizationWriter:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[Pending] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, values: dict[str, Any]) -> Row | None:
        """The new row, or None (and nothing written) if the balance does not cover it.
        Raises what the one-row statement raises (a unique violation)."""
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._pending.append((values, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        batch: list[Pending] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                if len(batch) == 1:
                    await self._one_by_one(batch)
                else:
                    await self._together(batch)
        finally:
            self._task = None
            for _, future in batch:  # only if this task was cancelled mid-batch
                if not future.done():
                    future.set_exception(RuntimeError("the write was cancelled"))

    async def _together(self, batch: list[Pending]) -> None:
        rows = [v for v, _ in batch]
        columns = [[r[c] for r in rows] for c in _ARRAYS]
        try:
            written = await self.db.pg_fetch(_INSERT_MANY, *columns, rows[0]["created_at"])
        except Exception:
            await self._one_by_one(batch)
            return
        by_key: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
        for row in written:
            by_key[_key(row)].append(row)
        left: list[Pending] = []
        for values, future in batch:
            found = by_key.get(_key(values))
            if found:
                _settle(future, found.pop())
            else:
                left.append((values, future))  # its account's share was not covered
        await self._one_by_one(left)

    async def _one_by_one(self, batch: list[Pending]) -> None:
        for values, future in batch:
            hot = INSERT_CHARGED if values["cost"] > 0 else INSERT
            try:
                row = await self.db.write_one(hot, values)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            _settle(future, row)


def _settle(future: asyncio.Future[Row | None], row: Row | None) -> None:
    if not future.done():
        future.set_result(row)
