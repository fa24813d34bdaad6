"""Status events (our extension): an authorization's changes, for its service's status_url.

Three kinds: ``dialing`` (a dispatcher claimed the call), ``finished`` (the outcome is
written: call_status, call_outcome, sip_code) and ``verified`` (verifyCode took the right
code, or the subscriber's inbound call arrived). Each is a row of ``status_events`` written
by the same statement or transaction as the change itself, so a crash can lose neither
without the other; webhooks/status.py delivers them.

Nothing is recorded, and nothing is paid, for services without a status_url:
- the claim and the outcome statements read the service's status_url in the statement that
  changes the row (a primary-key lookup, no extra round trip; on PostgreSQL the event is
  inserted by that same statement, a data-modifying CTE);
- verifyCode looks at the service as the request's authentication cached it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from typing import cast as cast_row

from sqlalchemy import Float, String, bindparam, cast, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Update

from ..storage.database import Database, Row
from ..storage.hot import Hot
from ..storage.tables import authorizations, services
from ..storage.webhook_tables import status_events
from ..webhooks.destinations import DestinationPolicy
from .accounts import Service

DIALING = "dialing"
FINISHED = "finished"
VERIFIED = "verified"
KINDS = (DIALING, FINISHED, VERIFIED)

a = authorizations.c
se = status_events.c

# Whether the changed row's service wants status events, read by the statement that changes it.
WANTED = (
    select(services.c.status_url.is_not(None))
    .where(services.c.id == a.service_id)
    .scalar_subquery()
    .label("status_wanted")
)
# Add to the RETURNING of a statement that changes authorizations, then pass its row on.
RETURNING = (a.service_id, WANTED)


def _row(
    event: str,
    *,
    service_id: int,
    authorization_id: int,
    now: float,
    call_status: int | None = None,
    outcome: str | None = None,
    sip_code: int | None = None,
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "service_id": service_id,
        "authorization_id": authorization_id,
        "event": event,
        "occurred_at": now,
        "call_status": call_status,
        "outcome": outcome,
        "sip_code": sip_code,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


async def _insert(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(status_events), list(rows))


def _wanted(row: Any) -> bool:
    """Whether the changed row's service wants events (False from a statement that did not
    ask: no service had a status_url)."""
    m = row._mapping if hasattr(row, "_mapping") else row
    return bool(m.get("status_wanted"))


async def enqueue_finished(
    conn: AsyncConnection,
    row: Any,
    *,
    authorization_id: int,
    call_status: int,
    outcome: str,
    sip_code: int | None,
    now: float,
) -> None:
    """The ``finished`` event, in ``conn``'s transaction, if the service wants it. ``row`` is
    what the outcome's UPDATE returned, with ``RETURNING`` among its columns."""
    if not _wanted(row):
        return
    m = row._mapping
    await _insert(
        conn,
        [
            _row(
                FINISHED,
                service_id=int(m["service_id"]),
                authorization_id=authorization_id,
                now=now,
                call_status=call_status,
                outcome=outcome,
                sip_code=sip_code,
            )
        ],
    )


async def enqueue_verified(
    conn: AsyncConnection, service: Service, *, authorization_id: int, now: float
) -> None:
    """The ``verified`` event (verifyCode), in ``conn``'s transaction, if the service (as
    authenticated, so no read here) has a status_url."""
    if service.status_url:
        event = _row(VERIFIED, service_id=service.id, authorization_id=authorization_id, now=now)
        await _insert(conn, [event])


async def enqueue_inbound_verified(
    conn: AsyncConnection, row: Any, *, authorization_id: int, now: float
) -> None:
    """An inbound call verified and finished the authorization: both events, if wanted."""
    if not _wanted(row):
        return
    sid = int(row._mapping["service_id"])
    await _insert(
        conn,
        [
            _row(VERIFIED, service_id=sid, authorization_id=authorization_id, now=now),
            _row(
                FINISHED,
                service_id=sid,
                authorization_id=authorization_id,
                now=now,
                call_status=1,
                outcome="delivered",
            ),
        ],
    )


_ANY = Hot(select(services.c.id).where(services.c.status_url.is_not(None)).limit(1))


class Watch:
    """Whether any service has a status_url, as this node read it at most ``refresh_s`` ago.

    While none has (most installations), the dispatcher runs exactly the statements it ran
    before status webhooks existed; once one has, the variants that read each row's service.
    One read per ``refresh_s`` at most, on the claim loop (not per call); a service that
    sets its first status_url gets events from then on within that time. Until the first
    read succeeds, it assumes one has (an event is never lost to a cold start)."""

    def __init__(self, db: Database, refresh_s: float = 1.0) -> None:
        self.db = db
        self.refresh_s = refresh_s
        self.any = True
        self._read_at: float | None = None

    async def check(self) -> bool:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self.refresh_s:
            self.any = await self.db.fetch_one(_ANY, {}) is not None
            self._read_at = now
        return self.any


def reporting(update_stmt: Any) -> Any:
    """An UPDATE of authorizations that also returns what ``enqueue_finished`` needs."""
    return update_stmt.returning(*RETURNING)


class DialingClaim:
    """The dispatcher's claim (queued -> dialing), recording a ``dialing`` event for each
    claimed row whose service has a status_url, atomically with the claim.

    PostgreSQL: one statement, the claim's UPDATE in a CTE and an INSERT of its wanted rows
    beside it. SQLite (no data-modifying CTEs): the UPDATE, then the INSERT only when a
    claimed row wants it, in the claim's transaction."""

    def __init__(self, claim: Update) -> None:
        self.plain = Hot(claim)
        self.claim = claim.returning(*RETURNING)
        claimed = self.claim.cte("claimed")
        now = bindparam("now", type_=Float)
        events = (
            insert(status_events)
            .from_select(
                [
                    se.event_id,
                    se.service_id,
                    se.authorization_id,
                    se.event,
                    se.occurred_at,
                    se.state,
                    se.attempts,
                    se.next_attempt_at,
                    se.created_at,
                ],
                select(
                    cast(func.gen_random_uuid(), String),
                    claimed.c.service_id,
                    claimed.c.id,
                    literal(DIALING),
                    now,
                    literal("pending"),
                    literal(0),
                    now,
                    now,
                ).where(claimed.c.status_wanted),
            )
            .cte("dialing_events")
        )
        self.pg = Hot(select(claimed).add_cte(events))

    async def run(self, db: Database, params: Mapping[str, Any], *, wanted: bool) -> list[Row]:
        """Claim; ``wanted``: whether any service may want events (``Watch``)."""
        if not wanted:
            return await db.write_all(self.plain, params)
        if not db.sqlite:
            return await db.pg_fetch(self.pg.sql, *self.pg.args(params))
        async with db.write() as conn:
            rows = (await conn.execute(self.claim, dict(params))).all()
            await _insert(
                conn,
                [
                    _row(
                        DIALING,
                        service_id=int(r.service_id),
                        authorization_id=int(r.id),
                        now=float(params["now"]),
                    )
                    for r in rows
                    if r.status_wanted
                ],
            )
        return [cast_row(Row, r._mapping) for r in rows]


def recording_finished(update_sql: str) -> str:
    """PostgreSQL: the outcome batch's UPDATE of ``authorizations AS t`` (given without its
    RETURNING) with a ``finished`` event inserted by the same statement for each written row
    whose service has a status_url; the statement returns the ids written."""
    returning = "RETURNING t.id, t.service_id, t.call_status, t.outcome, t.sip_code, t.finished_at"
    return f"""
WITH done AS ({update_sql} {returning}),
events AS (
  INSERT INTO status_events (event_id, service_id, authorization_id, event, occurred_at,
                             call_status, outcome, sip_code, state, attempts,
                             next_attempt_at, created_at)
  SELECT gen_random_uuid()::text, d.service_id, d.id, '{FINISHED}', d.finished_at,
         d.call_status, d.outcome, d.sip_code, 'pending', 0, d.finished_at, d.finished_at
  FROM done AS d JOIN services AS s ON s.id = d.service_id
  WHERE s.status_url IS NOT NULL
)
SELECT id FROM done
"""


# -- the service's status_url ------------------------------------------------------------------

MAX_URL_LENGTH = 2048


def status_url_refusal(url: str, policy: DestinationPolicy) -> str | None:
    """Why ``url`` cannot be a status_url (the rules of callback URLs), or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is longer than {MAX_URL_LENGTH} characters"
    return policy.refusal(url)


async def set_status_url(conn: AsyncConnection, service_id: int, url: str | None) -> None:
    """Start (a URL) or stop (None) recording status events for the service. Checked first
    with ``status_url_refusal``; nodes see it within their service cache time."""
    await conn.execute(
        update(services).where(services.c.id == service_id).values(status_url=url or None)
    )
