"""Finish a call: write its outcome and, if it did not reach the subscriber, refund it.

The one place a call's outcome is written, for the dispatcher that placed the call, for
recovery and for an inbound call alike: ``CallOutcomes.finish``, or ``finish_in`` inside a
caller's transaction; each returns whether it wrote the outcome. The write happens only while
the row still meets the condition its writer holds it by (``Hold``): a row that another
dispatcher finalised meanwhile is left alone and reported as not written. The refund and its
ledger row are in the outcome's transaction, so a call is refunded once or not finished at
all.

Outcomes are written many at a time: those that arrive while one write is in flight are
written together by the next, one commit for all of them, the way a database groups
commits. On PostgreSQL the outcomes with nothing to refund (reached, or free) are one
``UPDATE … FROM unnest(…)`` committed on its own, one round trip; the others, and every
outcome on SQLite, share one transaction. A batch that fails for a reason other than an
outage is logged, counted (``opencaller_write_batch_failures_total``) and written again one
row at a time, so each call gets its own result and one bad row costs no other its outcome.

Each outcome also records its ``finished`` status event (domain/status_events.py) if its
service has a status_url, in the same statement (the PostgreSQL batch) or transaction. While
no service of the installation has one (``status_events.Watch``), the statements are exactly
those above: nothing is read or written for events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Float, Integer, String, bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..observability import metrics
from ..storage.database import Database
from ..storage.outage import describe, is_unavailable
from ..storage.tables import authorizations
from . import billing, status_events

log = logging.getLogger("opencaller.outcomes")
a = authorizations.c

OPERATION = "finish_call"  # the metric's label
SIP_REASON_MAX = 128  # the column's width


@dataclass(frozen=True, slots=True)
class Ending:
    """How a call ended, as its row keeps it."""

    auth_id: int
    outcome: str
    reached: bool
    finished_at: float
    caller_id: str | None = None
    sip_code: int | None = None
    sip_reason: str | None = None
    q850_cause: int | None = None
    # What the call cost, if the writer knows (None: read from the row). A call that reached
    # the subscriber, or cost nothing, has nothing to refund.
    cost: int | None = None

    @property
    def may_refund(self) -> bool:
        return not self.reached and self.cost != 0


@dataclass(frozen=True, slots=True)
class Hold:
    """The condition under which a writer may still finish a row."""

    state: str = "dialing"
    owner: str | None = None  # the row's lease is this dispatcher's
    lease_before: float | None = None  # the row's lease ran out before this time

    @classmethod
    def leased_by(cls, owner: str) -> Hold:
        return cls(owner=owner)

    @classmethod
    def lease_expired(cls, before: float) -> Hold:
        return cls(lease_before=before)

    @classmethod
    def waiting(cls) -> Hold:
        return cls(state="waiting")


@dataclass(slots=True)
class _Pending:
    ending: Ending
    hold: Hold
    future: asyncio.Future[bool]


Writer = Callable[[Sequence[_Pending]], Awaitable[set[int]]]

_id = bindparam("b_id", type_=BigInteger)
_owner = bindparam("b_owner", type_=String)
_lease_before = bindparam("b_lease_before", type_=Float)

# One row, under any hold; its refund follows in the same transaction (``_finish_row``).
# ``refunded`` is not set here, so RETURNING gives the value the row had.
_FINISH_ROW = (
    update(authorizations)
    .where(
        a.id == _id,
        a.dispatch_state == bindparam("b_state", type_=String),
        or_(_owner.is_(None), a.lease_owner == _owner),
        or_(_lease_before.is_(None), a.lease_until < _lease_before),
    )
    .values(
        dispatch_state="done",
        call_status=bindparam("b_status", type_=Integer),
        outcome=bindparam("b_outcome", type_=String),
        caller_id=bindparam("b_caller_id", type_=String),
        sip_code=bindparam("b_sip_code", type_=Integer),
        sip_reason=bindparam("b_sip_reason", type_=String),
        q850_cause=bindparam("b_q850", type_=Integer),
        finished_at=bindparam("b_finished_at", type_=Float),
        lease_until=None,
    )
    .returning(a.account_id, a.cost, a.refunded, a.kind)
)
# The same, telling whether the row's service wants status events (while one may).
_FINISH_ROW_STATUS = _FINISH_ROW.returning(*status_events.RETURNING)

# PostgreSQL, outcomes with nothing to refund, each under its dispatcher's lease: the same
# write as ``_FINISH_ROW`` for many rows in one statement.
_UPDATE_LEASED_MANY = """
UPDATE authorizations AS t
SET dispatch_state = 'done', call_status = v.status, outcome = v.outcome,
    caller_id = v.caller_id, sip_code = v.sip_code, sip_reason = v.sip_reason,
    q850_cause = v.q850, finished_at = v.finished_at, lease_until = NULL
FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[],
            $7::text[], $8::int[], $9::float8[])
     AS v(id, owner, status, outcome, caller_id, sip_code, sip_reason, q850, finished_at)
WHERE t.id = v.id AND t.dispatch_state = 'dialing' AND t.lease_owner = v.owner
"""
_FINISH_LEASED_MANY = _UPDATE_LEASED_MANY + "RETURNING t.id"
# While some service has a status_url: the same, inserting their ``finished`` events too.
_FINISH_LEASED_MANY_STATUS = status_events.recording_finished(_UPDATE_LEASED_MANY)


class CallOutcomes:
    def __init__(self, db: Database, status: status_events.Watch | None = None) -> None:
        self.db = db
        # Whether any service may want status events; without a watch, assume one may.
        self.status = status
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None

    async def finish(self, ending: Ending, hold: Hold) -> bool:
        """Write the outcome (and the refund it is owed) if the row still meets ``hold``:
        whether it was written. Raises what the write raised, an outage included; the
        caller decides whether to try again."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append(_Pending(ending, hold, future))
        if self._task is None:
            self._task = loop.create_task(self._drain(), name="call-outcomes")
        return await future

    async def idle(self) -> None:
        """Wait for writes under way: a writer cancelled mid-write leaves its batch running,
        and nothing may touch the database once its owner closes it."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                leased = [] if self.db.sqlite else [p for p in batch if _one_statement(p)]
                rest = [p for p in batch if not _one_statement(p)] if leased else batch
                if leased:
                    await self._settle(leased, self._write_leased)
                if rest:
                    await self._settle(rest, self._write_in_transaction)
        finally:
            self._task = None

    async def _settle(self, batch: Sequence[_Pending], write: Writer) -> None:
        try:
            written = await write(batch)
        except Exception as exc:
            if len(batch) == 1 or is_unavailable(exc):
                _fail(batch, exc)  # the writers retry through an outage themselves
                return
            metrics.WRITE_BATCH_FAILURES.labels(OPERATION).inc()
            log.warning(
                "outcome batch failed; writing its %d calls one by one: %s",
                len(batch),
                describe(exc),
                extra={"ucaller_ids": [p.ending.auth_id for p in batch]},
            )
            for p in batch:
                await self._settle([p], write)
            return
        for p in batch:
            if not p.future.done():
                p.future.set_result(p.ending.auth_id in written)

    def _events(self) -> bool:
        return self.status is None or self.status.any

    async def _write_leased(self, batch: Sequence[_Pending]) -> set[int]:
        batch = sorted(batch, key=lambda p: p.ending.auth_id)  # rows locked in id order
        e = [p.ending for p in batch]
        records = await self.db.pg_fetch(
            _FINISH_LEASED_MANY_STATUS if self._events() else _FINISH_LEASED_MANY,
            [x.auth_id for x in e],
            [p.hold.owner for p in batch],
            [1 if x.reached else 0 for x in e],
            [x.outcome for x in e],
            [x.caller_id for x in e],
            [x.sip_code for x in e],
            [_sip_reason(x) for x in e],
            [x.q850_cause for x in e],
            [x.finished_at for x in e],
        )
        return {int(r["id"]) for r in records}

    async def _write_in_transaction(self, batch: Sequence[_Pending]) -> set[int]:
        written: set[int] = set()
        owed: list[_Refund] = []
        events = self._events()
        async with self.db.write() as conn:
            # Rows in id order, then balances in account order: two writers finishing some
            # of the same calls (an owner and a recovery) lock in one order, never in a cycle.
            for p in sorted(batch, key=lambda p: p.ending.auth_id):
                refund = await _finish_row(conn, p.ending, p.hold, events=events)
                if refund is not None:
                    written.add(p.ending.auth_id)
                    if refund.amount > 0:
                        owed.append(refund)
            for r in sorted(owed, key=lambda r: (r.account_id, r.auth_id)):
                await _give_back(conn, r)
        return written


async def finish_in(
    conn: AsyncConnection, ending: Ending, hold: Hold, *, events: bool = True
) -> bool:
    """The same write inside the caller's transaction, for an outcome that must commit with
    other rows (an inbound call and its webhook): whether the row was still held.
    ``events=False``: the caller records the status events itself (an inbound verification
    records ``verified`` before ``finished``)."""
    refund = await _finish_row(conn, ending, hold, events=events)
    if refund is None:
        return False
    if refund.amount > 0:
        await _give_back(conn, refund)
    return True


@dataclass(frozen=True, slots=True)
class _Refund:
    auth_id: int
    account_id: int
    amount: int  # 0: nothing owed
    channel: str
    now: float


async def _finish_row(
    conn: AsyncConnection, ending: Ending, hold: Hold, *, events: bool
) -> _Refund | None:
    """Write one outcome, and its ``finished`` event if ``events`` and its service wants it:
    what its call is owed, or None if the row is no longer held."""
    params = {
        "b_id": ending.auth_id,
        "b_state": hold.state,
        "b_owner": hold.owner,
        "b_lease_before": hold.lease_before,
        "b_status": 1 if ending.reached else 0,
        "b_outcome": ending.outcome,
        "b_caller_id": ending.caller_id,
        "b_sip_code": ending.sip_code,
        "b_sip_reason": _sip_reason(ending),
        "b_q850": ending.q850_cause,
        "b_finished_at": ending.finished_at,
    }
    row = (await conn.execute(_FINISH_ROW_STATUS if events else _FINISH_ROW, params)).first()
    if row is None:
        return None  # someone else finished it
    if events:
        await status_events.enqueue_finished(
            conn,
            row,
            authorization_id=ending.auth_id,
            call_status=1 if ending.reached else 0,
            outcome=ending.outcome,
            sip_code=ending.sip_code,
            now=ending.finished_at,
        )
    owed = 0 if ending.reached or row.refunded else int(row.cost)
    return _Refund(ending.auth_id, row.account_id, owed, row.kind, ending.finished_at)


async def _give_back(conn: AsyncConnection, r: _Refund) -> None:
    await conn.execute(update(authorizations).where(a.id == r.auth_id).values(refunded=True))
    await billing.refund(
        conn, r.account_id, r.amount, now=r.now, authorization_id=r.auth_id, channel=r.channel
    )


def _one_statement(p: _Pending) -> bool:
    """Whether the outcome fits the one-statement write: nothing to refund, under a lease."""
    h = p.hold
    return (
        not p.ending.may_refund
        and h.owner is not None
        and h.state == "dialing"
        and h.lease_before is None
    )


def _sip_reason(ending: Ending) -> str | None:
    return (ending.sip_reason or "")[:SIP_REASON_MAX] or None


def _fail(batch: Sequence[_Pending], exc: Exception) -> None:
    for p in batch:
        if not p.future.done():
            p.future.set_exception(exc)
