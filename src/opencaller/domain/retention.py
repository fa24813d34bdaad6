"""Retention: old finished authorizations and settled webhook deliveries are deleted in small
batches, so the tables (and the dispatch queue's indexes) stop growing with traffic.

What is never deleted: the ledger (money; its rows keep their authorization id), rows still
in the dispatch queue (``queued``, ``dialing``, ``waiting``), and anything younger than the
longest window that reads authorizations (24 h of per-number limits; the hour of the service
limit, 5 min of free repeats and 10 min of inbound verifications are shorter), whatever the
settings say. A repeat chain goes as one: its original and its repeats in the same batch,
once every one of them is finished, so getInfo never finds half a chain. A purged id answers
getInfo and initRepeat with error 10, like an id that never existed; a ``unique`` key is
remembered as long as its authorization is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, and_, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ..storage.database import Database
from ..storage.tables import authorizations, services
from ..storage.webhook_tables import status_events, webhook_outbox
from . import limits
from .authorizations import INBOUND_TTL_S, REPEAT_WINDOW_S
from .clock import Clock

log = logging.getLogger("opencaller.retention")

DAY = 86_400.0
# Nothing younger is ever purged: the longest window that counts authorizations, plus a day.
MIN_AGE_S = max(limits.DAY, limits.HOUR, REPEAT_WINDOW_S, INBOUND_TTL_S) + DAY
BATCH = 500

a = authorizations.c
# Settled deliveries of both kinds are kept ``webhook_retention_days``.
OUTBOXES = (webhook_outbox, status_events)
_repeats = authorizations.alias("r")


@dataclass(frozen=True, slots=True)
class Purged:
    authorizations: int
    webhooks: int


def authorization_cutoff(now: float, days: float) -> float | None:
    """Authorizations created before this are purged; None keeps them forever (days 0)."""
    if days <= 0:
        return None
    return now - max(days * DAY, MIN_AGE_S)


def webhook_cutoff(now: float, days: float) -> float | None:
    return None if days <= 0 else now - days * DAY


def _finished_chains(service_id: int, cutoff: float) -> Select[Any]:
    """Originals of one service created before ``cutoff`` whose chain is wholly finished.

    Per service, so the (service_id, created_at) index bounds the scan to old rows."""
    unfinished_repeat = exists(
        select(_repeats.c.id).where(
            _repeats.c.first_id == a.id, _repeats.c.dispatch_state != "done"
        )
    )
    return select(a.id).where(
        a.service_id == service_id,
        a.created_at < cutoff,
        a.first_id.is_(None),
        a.dispatch_state == "done",
        ~unfinished_repeat,
    )


async def _service_ids(db: Database) -> list[int]:
    async with db.read() as conn:
        return [int(i) for i in (await conn.scalars(select(services.c.id).order_by(services.c.id)))]


async def _purge_chains(db: Database, service_id: int, cutoff: float, batch: int) -> int:
    """One batch: up to ``batch`` chains, deleted in one short transaction."""
    roots = (
        _finished_chains(service_id, cutoff)
        .order_by(a.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    async with db.write() as conn:
        ids = [int(i) for i in (await conn.scalars(roots))]
        if not ids:
            return 0
        gone = await conn.execute(
            delete(authorizations).where(or_(a.id.in_(ids), a.first_id.in_(ids)))
        )
        return int(gone.rowcount or 0)


def _settled(outbox: Table, cutoff: float) -> list[ColumnElement[bool]]:
    """Deliveries done with (delivered or given up) before ``cutoff``. Both outboxes, the
    callbacks' and the status events', have these columns and a (state, next_attempt_at)
    index."""
    c = outbox.c
    return [
        c.state.in_(("delivered", "failed")),
        c.next_attempt_at < cutoff,  # leads the (state, next_attempt_at) index
        func.coalesce(c.delivered_at, c.created_at) < cutoff,
    ]


async def _purge_webhooks(db: Database, cutoff: float, batch: int, outbox: Table) -> int:
    settled = (
        select(outbox.c.id)
        .where(*_settled(outbox, cutoff))
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    async with db.write() as conn:
        ids = [int(i) for i in (await conn.scalars(settled))]
        if not ids:
            return 0
        gone = await conn.execute(delete(outbox).where(outbox.c.id.in_(ids)))
        return int(gone.rowcount or 0)


async def _count(conn: AsyncConnection, service_id: int, cutoff: float) -> int:
    roots = _finished_chains(service_id, cutoff).subquery()
    q = select(func.count()).where(
        or_(a.id.in_(select(roots.c.id)), a.first_id.in_(select(roots.c.id)))
    )
    return int((await conn.execute(q)).scalar_one())


async def count_purgeable(
    db: Database, now: float, *, retention_days: float, webhook_retention_days: float
) -> Purged:
    """What ``purge`` would delete now (for ``--dry-run``)."""
    n_auth = n_hooks = 0
    cutoff = authorization_cutoff(now, retention_days)
    hooks = webhook_cutoff(now, webhook_retention_days)
    async with db.read() as conn:
        if cutoff is not None:
            for sid in await _service_ids(db):
                n_auth += await _count(conn, sid, cutoff)
        if hooks is not None:
            for outbox in OUTBOXES:
                settled = and_(*_settled(outbox, hooks))
                q = select(func.count()).select_from(outbox).where(settled)
                n_hooks += int((await conn.execute(q)).scalar_one())
    return Purged(n_auth, n_hooks)


async def purge(
    db: Database,
    now: float,
    *,
    retention_days: float,
    webhook_retention_days: float,
    batch: int = BATCH,
    pause_s: float = 0.0,
    stop: asyncio.Event | None = None,
) -> Purged:
    """Delete everything past retention, ``batch`` rows at a time, each batch its own short
    transaction (no long locks); ``pause_s`` between batches leaves room for other writers,
    and a set ``stop`` ends the purge after the current batch."""
    n_auth = n_hooks = 0

    def stopping() -> bool:
        return stop is not None and stop.is_set()

    cutoff = authorization_cutoff(now, retention_days)
    if cutoff is not None:
        for sid in await _service_ids(db):
            while not stopping():
                n = await _purge_chains(db, sid, cutoff, batch)
                n_auth += n
                if n == 0:
                    break
                await asyncio.sleep(pause_s)
    hooks = webhook_cutoff(now, webhook_retention_days)
    for outbox in OUTBOXES:
        while hooks is not None and not stopping():
            n = await _purge_webhooks(db, hooks, batch, outbox)
            n_hooks += n
            if n < batch:
                break
            await asyncio.sleep(pause_s)
    return Purged(n_auth, n_hooks)


async def run_periodically(
    db: Database,
    clock: Clock,
    stop: asyncio.Event,
    *,
    retention_days: float,
    webhook_retention_days: float,
    interval_s: float,
    batch: int = BATCH,
) -> None:
    """The worker's job: a purge every ``interval_s`` until ``stop``. Several processes may
    run it at once; each batch skips rows another one is deleting (PostgreSQL)."""
    if retention_days <= 0 and webhook_retention_days <= 0:
        return
    wait = min(interval_s, 60.0)  # the first purge soon after start, then every interval
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set():
            return
        wait = interval_s
        try:
            done = await purge(
                db,
                clock.now(),
                retention_days=retention_days,
                webhook_retention_days=webhook_retention_days,
                batch=batch,
                pause_s=0.05,
                stop=stop,
            )
            if done.authorizations or done.webhooks:
                log.info(
                    "retention purge",
                    extra={"authorizations": done.authorizations, "webhooks": done.webhooks},
                )
        except Exception:
            log.warning("retention purge failed; retrying next time", exc_info=True)
