"""What /metrics measures at each scrape: whether PostgreSQL/SQLite and Redis answer, the
dispatch queue (depth, oldest row per state, overdue outcomes) and the webhook outbox.

Every query reads small indexed sets (the partial index of pending dispatch states, the
outbox's (state, next_attempt_at) index) and runs under a short timeout, so a scrape stays
cheap and a dead dependency shows as ``opencaller_dependency_up 0`` instead of a hung scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from sqlalchemy import case, func, select

from ..storage.database import Database
from ..storage.tables import authorizations
from ..storage.webhook_tables import status_events, webhook_outbox
from .metrics import Probes, QueueDepth

log = logging.getLogger("opencaller.metrics")

TIMEOUT_S = 2.0
PENDING = ("queued", "dialing", "waiting")

a = authorizations.c
wo = webhook_outbox.c
se = status_events.c


class Pingable(Protocol):
    async def ping(self) -> bool: ...


async def _up(dep: Pingable) -> int:
    try:
        return 1 if await asyncio.wait_for(dep.ping(), TIMEOUT_S) else 0
    except Exception:
        return 0


async def _queue(db: Database, queue: QueueDepth, probes: Probes, now: float) -> None:
    q = (
        select(
            a.dispatch_state,
            func.count(),
            func.min(a.created_at),
            func.min(a.dialed_at),
            func.sum(case((a.lease_until < now, 1), else_=0)),
        )
        .where(a.dispatch_state.in_(PENDING))
        .group_by(a.dispatch_state)
    )
    depth = dict.fromkeys(PENDING, 0)
    oldest = dict.fromkeys(PENDING, 0.0)
    expired = 0
    async with db.read() as conn:
        for state, n, created, dialed, overdue in (await conn.execute(q)).all():
            depth[str(state)] = int(n)
            since = dialed if state == "dialing" and dialed is not None else created
            oldest[str(state)] = max(0.0, now - float(since)) if since is not None else 0.0
            if state == "dialing":
                expired = int(overdue or 0)
    queue.depth, probes.oldest, probes.expired_leases = depth, oldest, expired


async def _webhooks(db: Database, probes: Probes, now: float) -> None:
    q = select(
        wo.state,
        func.count(),
        func.min(wo.created_at),
        func.sum(case((wo.attempts > 0, 1), else_=0)),
    ).where(wo.state.in_(("pending", "failed")))  # delivered rows are many and uneventful
    q = q.group_by(wo.state)
    counts = {"pending": 0, "failed": 0}
    oldest, retrying = 0.0, 0
    async with db.read() as conn:
        for state, n, created, tried in (await conn.execute(q)).all():
            counts[str(state)] = int(n)
            if state == "pending":
                oldest = max(0.0, now - float(created)) if created is not None else 0.0
                retrying = int(tried or 0)
    probes.webhooks, probes.webhook_oldest_pending, probes.webhook_retrying = (
        counts,
        oldest,
        retrying,
    )


async def _status_events(db: Database, probes: Probes, now: float) -> None:
    """The status webhooks' outbox, like the callbacks' (delivered rows are left out)."""
    q = (
        select(se.state, func.count(), func.min(se.created_at))
        .where(se.state.in_(("pending", "failed")))
        .group_by(se.state)
    )
    counts = {"pending": 0, "failed": 0}
    oldest = 0.0
    async with db.read() as conn:
        for state, n, created in (await conn.execute(q)).all():
            counts[str(state)] = int(n)
            if state == "pending" and created is not None:
                oldest = max(0.0, now - float(created))
    probes.status_events, probes.status_oldest_pending = counts, oldest


async def measure(db: Database, redis: Pingable | None, queue: QueueDepth, probes: Probes) -> None:
    """Fill ``queue`` and ``probes`` for the scrape about to be rendered."""
    checks = [_up(db)] + ([_up(redis)] if redis is not None else [])
    ups = await asyncio.gather(*checks)
    probes.up = {"database": ups[0]}
    if redis is not None:
        probes.up["redis"] = ups[1]
    if not ups[0]:
        return  # the queue gauges keep their last values rather than waiting on a dead database
    now = time.time()
    try:
        await asyncio.wait_for(
            asyncio.gather(
                _queue(db, queue, probes, now),
                _webhooks(db, probes, now),
                _status_events(db, probes, now),
            ),
            TIMEOUT_S,
        )
    except Exception:
        log.warning("queue or outbox unavailable for metrics", exc_info=True)
