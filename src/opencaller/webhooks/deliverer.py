"""The outbox worker: lease due rows, POST them signed, record the result, back off on
failure. Any number of processes may run it against one database.

Each delivery resolves the receiver's name once, refuses it if any address is not allowed
(webhooks/destinations.py), and connects to the address it checked: the request goes to that
IP with the original Host header and TLS name, so DNS cannot change between check and
connect. Redirects are never followed, and proxies from the environment are ignored."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
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

# One implementation of the signature for both sides: customers verify with the same module.
from opencaller.webhook_signature import EVENT_HEADER, SIGNATURE_HEADER, sign

from .destinations import DestinationPolicy, ForbiddenDestination, IPAddress, Target

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
        self.client = client or httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,  # an HTTP_PROXY would connect elsewhere than the address checked
            # Requests go to a pinned IP; a pooled TLS connection to that IP was verified for
            # whichever name opened it, so never reuse one for another receiver.
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self.policy = policy or DestinationPolicy()
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
        """The address to connect to. Raises ForbiddenDestination if the name has any address
        webhooks may not reach (rather than picking another: such a name is not a receiver)."""
        if target.address is not None:
            self.policy.check_address(target.address)
            return target.address
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            ),
            self.timeout_s,
        )
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise OSError(f"{target.host} has no address")
        for ip in addresses:
            try:
                self.policy.check_address(ip)
            except ForbiddenDestination as exc:
                raise ForbiddenDestination(f"{target.host} resolves to {exc}") from None
        return addresses[0]

    async def _post(self, job: _Job) -> httpx.Response:
        target = self.policy.check_url(job.url)
        ip = await self.resolve(target)
        request = self.client.build_request(
            "POST",
            target.url,  # Host header (and Basic auth from userinfo) for the name given
            content=job.body,
            headers={
                "Content-Type": "application/json",
                EVENT_HEADER: job.event,
                SIGNATURE_HEADER: sign(job.secret, job.body),
                "User-Agent": "opencaller-webhooks",
            },
            timeout=self.timeout_s,
        )
        request.url = target.url.copy_with(host=str(ip))  # connect to the address checked
        if target.url.scheme == "https" and target.address is None:
            request.extensions["sni_hostname"] = target.host  # and verify TLS for the name
        return await self.client.send(request, follow_redirects=False)

    async def _deliver(self, token: str, job: _Job) -> bool:
        status: int | None = None
        error: str | None = None
        refused = False
        try:
            resp = await self._post(job)
            status = resp.status_code
            ok = 200 <= status < 300
            if resp.is_redirect:
                error = f"HTTP {status} (redirects are not followed)"
            elif not ok:
                error = f"HTTP {status}"
        except ForbiddenDestination as exc:
            ok, refused = False, True
            error = f"refused: {exc}"[:500]
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            ok = False
            error = f"{type(exc).__name__}: {exc}"[:500]
        now = time.time()
        attempts = job.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status": status,
            "last_error": error,
            "lease_owner": None,
            "lease_until": None,
        }
        if ok:
            values.update(state="delivered", delivered_at=now)
        elif refused:  # the URL will not become acceptable by waiting
            values.update(state="failed")
            log.warning("webhook %d to %s %s", job.id, job.url, error)
        elif attempts >= job.max_attempts:
            values.update(state="failed")
            log.warning("webhook %d to %s failed for good: %s", job.id, job.url, error)
        else:
            values.update(next_attempt_at=now + self.backoff(attempts))
        async with self.engine.begin() as conn:
            await conn.execute(
                update(wo).where(wo.c.id == job.id, wo.c.lease_owner == token).values(**values)
            )
        return ok

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
