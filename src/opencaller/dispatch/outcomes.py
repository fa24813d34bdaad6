"""Call outcomes written many per statement (PostgreSQL).

Most calls end with nothing to refund (reached, or free), so their outcome is one UPDATE that
needs no transaction of its own. Under load, the outcomes that arrive while one write is in
flight are written together by the next: one statement and one commit for all of them, the
way a database groups commits. Alone, an outcome is written at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..domain import status_events
from ..storage.database import Database

# Only the rows still ``dialing`` under this dispatcher's lease: a row whose lease was lost
# and that another dispatcher finalised is left alone (and reported as not written).
_UPDATE_MANY = """
UPDATE authorizations AS t
SET dispatch_state = 'done', call_status = v.status, outcome = v.outcome,
    caller_id = v.caller_id, sip_code = v.sip_code, sip_reason = v.sip_reason,
    q850_cause = v.q850, finished_at = v.finished_at, lease_until = NULL
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
            $7::int[], $8::float8[])
     AS v(id, status, outcome, caller_id, sip_code, sip_reason, q850, finished_at)
WHERE t.id = v.id AND t.dispatch_state = 'dialing' AND t.lease_owner = $9
"""
_FINISH_MANY = _UPDATE_MANY + "RETURNING t.id"
# While some service has a status_url: the same, recording their status events too.
_FINISH_MANY_STATUS = status_events.recording_finished(_UPDATE_MANY)

_COLUMNS = ("b_id", "b_status", "b_outcome", "b_caller_id", "b_sip_code", "b_sip_reason")
_COLUMNS_2 = ("b_q850", "b_now")


class OutcomeBatcher:
    def __init__(self, db: Database, owner: str, status: status_events.Watch | None = None) -> None:
        self.db = db
        self.owner = owner
        self.status = status or status_events.Watch(db)  # unread: assumes a status_url
        self._pending: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, params: dict[str, Any]) -> bool:
        """Whether the row was still ours to finish (``params`` as for the one-row UPDATE)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((params, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    written = await self._write([p for p, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for params, future in batch:
                    if not future.done():
                        future.set_result(params["b_id"] in written)
        finally:
            self._task = None

    async def _write(self, rows: list[dict[str, Any]]) -> set[int]:
        columns = [[r[c] for r in rows] for c in (*_COLUMNS, *_COLUMNS_2)]
        sql = _FINISH_MANY_STATUS if self.status.any else _FINISH_MANY
        records = await self.db.pg_fetch(sql, *columns, self.owner)
        return {int(r["id"]) for r in records}
