"""Status webhooks (our extension): deliver ``status_events`` rows to the service's status_url.

The body is rendered from the row (``render``), so every attempt sends the same JSON with the
same ``event_id``; it is signed like the inbound webhook (``X-Opencaller-Signature`` with the
service's secret key, ``X-Opencaller-Event`` naming the kind). Delivery is at least once:
a worker that dies after the receiver answered but before the row was marked sends it again
once its lease ends, so receivers deduplicate on ``event_id``.

Order per authorization: a row is due only while no earlier row of the same authorization is
pending, so an event waits until the ones before it were delivered or given up; events of
different authorizations go in parallel. The URL is read at delivery: a service that changed
its status_url gets the events still waiting at the new one, and one that removed it gets
none of them (they are marked failed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from opencaller.storage.outage import describe, is_unavailable
from opencaller.storage.tables import services
from opencaller.storage.webhook_tables import status_events

from .destinations import DestinationPolicy
from .sender import Attempt, Sender, attempt, new_client, settle

log = logging.getLogger("opencaller.webhooks")
se = status_events.c
MAX_ATTEMPTS = 10


def render(row: Any) -> dict[str, Any]:
    """The JSON object a status event is sent as (docs/client.md, the OpenAPI webhooks)."""
    m = row._mapping if hasattr(row, "_mapping") else row
    at = int(m["occurred_at"])
    body: dict[str, Any] = {
        "event_id": m["event_id"],
        "event": m["event"],
        "ucaller_id": int(m["authorization_id"]),
        "service_id": int(m["service_id"]),
        "timestamp": at,
    }
    if m["event"] == "finished":
        body.update(call_status=m["call_status"], call_outcome=m["outcome"], sip_code=m["sip_code"])
    elif m["event"] == "verified":
        body["verified_at"] = at
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class _Job:
    id: int
    url: str | None
    event: str
    body: bytes
    attempts: int
    secret: str


class StatusDeliverer:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        client: httpx.AsyncClient | None = None,
        policy: DestinationPolicy | None = None,
        owner: str | None = None,
        batch: int = 50,
        lease_s: float = 60.0,
        timeout_s: float = 10.0,
        base_backoff_s: float = 5.0,
        max_backoff_s: float = 3600.0,
        poll_interval_s: float = 1.0,
        max_attempts: int = MAX_ATTEMPTS,
        concurrency: int = 100,
    ) -> None:
        self.engine = engine
        self._own_client = client is None
        self.client = client or new_client(timeout_s)
        self.sender = Sender(self.client, policy or DestinationPolicy(), timeout_s)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.batch = batch
        self.lease_s = lease_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.max_attempts = max_attempts
        self.concurrency = concurrency

    def backoff(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``: exponential with ±20 % jitter."""
        delay = min(self.max_backoff_s, self.base_backoff_s * 2 ** max(0, attempts - 1))
        return float(delay * random.uniform(0.8, 1.2))

    def _due(self, now: float, limit: int) -> Any:
        earlier = status_events.alias("earlier")
        waits = exists().where(
            earlier.c.authorization_id == se.authorization_id,
            earlier.c.state == "pending",
            earlier.c.id < se.id,
        )
        free = or_(se.lease_until.is_(None), se.lease_until < now)
        return (
            select(se.id)
            .where(se.state == "pending", se.next_attempt_at <= now, free, ~waits)
            .order_by(se.next_attempt_at, se.id)
            .limit(limit)
        )

    async def _claim(self, limit: int) -> tuple[str, list[_Job]]:
        now = time.time()
        token = f"{self.owner}:{uuid.uuid4().hex[:12]}"[-64:]
        due = self._due(now, limit)
        lease = update(status_events).values(lease_owner=token, lease_until=now + self.lease_s)
        async with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # Lock the rows we take; other workers skip them instead of waiting.
                locked = due.with_for_update(skip_locked=True, of=status_events)
                ids = list((await conn.execute(locked)).scalars())
                if ids:
                    await conn.execute(lease.where(se.id.in_(ids)))
            else:
                # SQLite runs one writer at a time, so one UPDATE statement is atomic.
                await conn.execute(lease.where(se.id.in_(due.scalar_subquery())))
            rows = (
                await conn.execute(
                    select(status_events, services.c.status_url, services.c.secret_key)
                    .join(services, services.c.id == se.service_id)
                    .where(se.lease_owner == token)
                )
            ).all()
        jobs = [
            _Job(r.id, r.status_url, r.event, encode(render(r)), r.attempts, r.secret_key)
            for r in rows
        ]
        return token, jobs

    async def _deliver(self, token: str, job: _Job) -> bool:
        if job.url is None:
            result = Attempt(False, None, "the service has no status_url any more", refused=True)
        else:
            result = await attempt(self.sender, job.url, job.event, job.body, job.secret)
        attempts = job.attempts + 1
        values = settle(result, attempts, self.max_attempts, self.backoff(attempts), time.time())
        if values.get("state") == "failed":
            log.warning("status event %d to %s given up: %s", job.id, job.url, result.error)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(status_events)
                .where(se.id == job.id, se.lease_owner == token)
                .values(**values)
            )
        return result.ok

    async def run_once(self) -> int:
        """Deliver what is due now and wait for it; returns how many were attempted."""
        token, jobs = await self._claim(self.batch)
        if jobs:
            await asyncio.gather(*(self._deliver(token, j) for j in jobs))
        return len(jobs)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Loop until ``stop`` is set (or the task is cancelled). Each delivery runs on its
        own, up to ``concurrency`` at once: a receiver that hangs holds its own event (and
        its authorization's later ones), never the others."""
        stop = stop or asyncio.Event()
        stopped = asyncio.ensure_future(stop.wait())
        inflight: set[asyncio.Future[Any]] = set()
        outage = False  # an unreachable database is said once, not every poll
        try:
            while not stop.is_set():
                free = min(self.batch, self.concurrency - len(inflight))
                claimed, token, jobs = 0, "", list[_Job]()
                if free > 0:
                    try:
                        token, jobs = await self._claim(free)
                    except Exception as exc:
                        if not is_unavailable(exc):
                            log.exception("status event delivery round failed")
                        elif not outage:
                            outage = True
                            log.warning("status event delivery paused: %s", describe(exc))
                    else:
                        outage = False
                    claimed = len(jobs)
                    inflight |= {asyncio.ensure_future(self._deliver(token, j)) for j in jobs}
                if claimed and claimed == free:
                    continue  # there may be more due
                # Drained or full: wait for a delivery to end, the next poll, or the stop.
                done, _ = await asyncio.wait(
                    {*inflight, stopped},
                    timeout=self.poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done - {stopped}:
                    inflight.discard(task)
                    if not task.cancelled() and task.exception() is not None:
                        log.error("status event delivery failed", exc_info=task.exception())
        finally:
            stopped.cancel()
            # Deliveries cut short keep their lease; another worker sends them again later.
            if inflight:
                _, pending = await asyncio.wait(inflight, timeout=5)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*inflight, return_exceptions=True)
            if self._own_client:
                await self.client.aclose()
