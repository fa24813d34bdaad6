"""The outbox worker: lease due rows, POST them signed, record the result, back off on
failure. Any number of processes may run it against one database.

Each delivery goes through webhooks/sender.py: the receiver's name is resolved once and
checked, and the request connects to the address checked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from opencaller.storage.outage import describe, is_unavailable
from opencaller.storage.tables import services
from opencaller.storage.webhook_tables import webhook_outbox as wo

from .destinations import DestinationPolicy, IPAddress, Target
from .sender import Sender, attempt, new_client, settle

log = logging.getLogger("opencaller.webhooks")


@dataclass(frozen=True, slots=True)
class _Job:
    id: int
    url: str
    event: str
    body: bytes
    attempts: int
    max_attempts: int
    secret: str


class WebhookDeliverer:
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
    ) -> None:
        self.engine = engine
        self._own_client = client is None
        self.client = client or new_client(timeout_s)
        self.policy = policy or DestinationPolicy()
        self.sender = Sender(self.client, self.policy, timeout_s, resolve=self.resolve)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.batch = batch
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s

    def backoff(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``: exponential with ±20 % jitter."""
        delay = min(self.max_backoff_s, self.base_backoff_s * 2 ** max(0, attempts - 1))
        return float(delay * random.uniform(0.8, 1.2))

    async def _claim(self) -> tuple[str, list[_Job]]:
        now = time.time()
        token = f"{self.owner}:{uuid.uuid4().hex[:12]}"[-64:]
        free = or_(wo.c.lease_until.is_(None), wo.c.lease_until < now)
        due = (
            select(wo.c.id)
            .where(wo.c.state == "pending", wo.c.next_attempt_at <= now, free)
            .order_by(wo.c.next_attempt_at)
            .limit(self.batch)
        )
        lease = update(wo).values(lease_owner=token, lease_until=now + self.lease_s)
        async with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # Lock the rows we take; other workers skip them instead of waiting.
                ids = list((await conn.execute(due.with_for_update(skip_locked=True))).scalars())
                if ids:
                    await conn.execute(lease.where(wo.c.id.in_(ids)))
            else:
                # SQLite runs one writer at a time, so one UPDATE statement is atomic.
                await conn.execute(
                    lease.where(wo.c.id.in_(due.scalar_subquery()), wo.c.state == "pending", free)
                )
            rows = (
                await conn.execute(
                    select(
                        wo.c.id,
                        wo.c.url,
                        wo.c.event,
                        wo.c.body,
                        wo.c.attempts,
                        wo.c.max_attempts,
                        services.c.secret_key,
                    )
                    .join(services, services.c.id == wo.c.service_id)
                    .where(wo.c.lease_owner == token)
                )
            ).all()
        jobs = [
            _Job(r.id, r.url, r.event, r.body.encode(), r.attempts, r.max_attempts, r.secret_key)
            for r in rows
        ]
        return token, jobs

    async def resolve(self, target: Target) -> IPAddress:
        """The address to connect to (see webhooks/sender.py)."""
        return await self.sender.resolve(target)

    async def _deliver(self, token: str, job: _Job) -> bool:
        result = await attempt(self.sender, job.url, job.event, job.body, job.secret)
        attempts = job.attempts + 1
        values = settle(result, attempts, job.max_attempts, self.backoff(attempts), time.time())
        if values.get("state") == "failed":
            reason = result.error if result.refused else f"failed for good: {result.error}"
            log.warning("webhook %d to %s %s", job.id, job.url, reason)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(wo).where(wo.c.id == job.id, wo.c.lease_owner == token).values(**values)
            )
        return result.ok

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many deliveries were attempted."""
        token, jobs = await self._claim()
        if jobs:
            await asyncio.gather(*(self._deliver(token, j) for j in jobs))
        return len(jobs)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Loop until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        outage = False  # an unreachable database is said once, not every poll
        try:
            while not stop.is_set():
                try:
                    n = await self.run_once()
                except Exception as exc:
                    n = 0
                    if not is_unavailable(exc):
                        log.exception("webhook delivery round failed")
                    elif not outage:
                        outage = True
                        log.warning("webhook delivery paused: %s", describe(exc))
                else:
                    if outage:
                        outage = False
                        log.info("webhook delivery resumed: database reachable again")
                if n < self.batch:  # drained: wait for more
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.poll_interval_s)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()
