"""The dispatcher: takes committed authorizations from the database and places their calls.

The authorizations table is the queue. A dispatcher claims rows by moving them from
``queued`` to ``dialing`` with its name and a lease, commits, and only then asks the provider
to call. While calls run it keeps extending the leases. If the process dies, its ``dialing``
rows outlive their lease and any dispatcher finalises them as ``interrupted`` (call_status 0)
instead of calling again: a ucaller_id never yields two calls. Rows still ``queued`` are
untouched by a crash and are called by whichever dispatcher runs next.

A call's outcome is kept until it is written: through a database outage the dispatcher
retries the write with backoff, and the call keeps its slot and its lease meanwhile. Recovery
waits a grace period past an expired lease, so a worker that could not renew during the
outage writes the real outcome first (docs/deployment.md, "PostgreSQL outages").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Float, Integer, String, bindparam, select, update

from ..domain import status_events
from ..domain.authorizations import INBOUND_TTL_S
from ..domain.call_outcomes import CallOutcomes, Ending, Hold
from ..domain.clock import Clock
from ..observability import metrics
from ..storage.database import Database
from ..storage.outage import describe, is_unavailable
from ..storage.tables import authorizations
from ..telephony.base import (
    CUT_GRACE_S,
    CallEvent,
    CallKind,
    CallReport,
    CallRequest,
    Outcome,
    Provider,
    deadline_report,
)

log = logging.getLogger("opencaller.dispatch")
a = authorizations.c

FinalHook = Callable[[int, CallReport], Awaitable[None]]

# How much longer than a provider's hang-up grace a stopping dispatcher waits for cut calls.
STOP_SLACK_S = 3.0
# Backoff between attempts to write an outcome while the database is unavailable.
OUTCOME_RETRY_MIN_S = 0.1
OUTCOME_RETRY_MAX_S = 2.0
# Errors other than an outage (a bug, a constraint) are tried this often, then logged.
OUTCOME_OTHER_ERROR_ATTEMPTS = 5


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# Claim up to :free queued rows, oldest first, skipping rows another dispatcher is claiming:
# one statement, so on PostgreSQL it commits on its own (with the status events it records).
_CLAIM = status_events.DialingClaim(
    update(authorizations)
    .where(
        a.id.in_(
            select(a.id)
            .where(a.dispatch_state == "queued")
            .order_by(a.id)
            .limit(bindparam("free", type_=Integer))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        ),
        a.dispatch_state == "queued",
    )
    .values(
        dispatch_state="dialing",
        lease_owner=bindparam("owner", type_=String),
        lease_until=bindparam("until", type_=Float),
        dialed_at=bindparam("now", type_=Float),
    )
    .returning(a.id, a.phone, a.code, a.kind, a.is_test, a.created_at, a.cost)
)


class Dispatcher:
    def __init__(
        self,
        db: Database,
        provider: Provider,
        simulator: Provider,
        clock: Clock,
        *,
        lease_s: float = 30.0,
        concurrency: int = 200,
        poll_interval_s: float = 0.5,
        name: str | None = None,
        on_final: FinalHook | None = None,
        lease_grace_s: float | None = None,
        status_refresh_s: float = 1.0,
    ) -> None:
        self.db = db
        self.provider = provider
        self.simulator = simulator
        self.clock = clock
        self.lease_s = lease_s
        # How long past its expiry recovery leaves a lease alone: the owner may be alive
        # but unable to renew (database outage) and about to write the real outcome.
        self.lease_grace_s = lease_s if lease_grace_s is None else lease_grace_s
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.name = name or worker_name()
        self.on_final = on_final
        self._wake = asyncio.Event()
        self._wake_lease = asyncio.Event()  # set only to stop the lease loop at once
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Loop time after which a call's lease is no longer renewed: its deadline plus the
        # provider's grace to hang up. A call stuck past it is left to recovery.
        self._renew_until: dict[int, float] = {}
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        # Recovery scans the table; once a second is plenty and keeps it off the wake-up path.
        self.recover_interval_s = min(1.0, lease_s / 3)
        self._recovered_at = -1e18
        # Since when (loop time) this dispatcher has reached the database without a failure.
        # Leases are renewed only while the database answers, so after an outage no lease
        # says anything about its owner until the owners had a full lease to renew.
        self._db_ok_since: float | None = None
        self._outage_logged_at = -1e18  # one warning when an outage starts, then one a minute
        self._in_outage = False
        # Whether any service wants status events: if none, no statement reads status_url.
        self.status = status_events.Watch(db, status_refresh_s)
        # Outcomes and refunds are written there, many at a time (domain/call_outcomes.py),
        # with their status events while ``self.status`` says a service may want them.
        self.outcomes = CallOutcomes(db, self.status)

    def wake(self) -> None:
        self._wake.set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="dispatch-claim"),
            asyncio.create_task(self._lease_loop(), name="dispatch-lease"),
        ]

    async def stop(self, *, drain_s: float = 5.0) -> None:
        """Stop claiming; let calls in progress finish for up to ``drain_s`` seconds."""
        self._stopping = True
        self._wake.set()
        self._wake_lease.set()
        # Let the loops see the flag rather than cancelling them: a task cancelled inside a
        # SQLite transaction can leave its connection holding the write lock.
        _, stuck = await asyncio.wait(self._tasks, timeout=self.poll_interval_s + 5)
        for t in stuck:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=drain_s)
        cut = list(self._inflight.values())
        for t in cut:
            t.cancel()
        # Wait for them to unwind: none may touch the database once the caller closes it.
        # A cancelled call is ended on the wire by its provider (CANCEL or BYE, within
        # CUT_GRACE_S). Calls cut short here keep their lease; another dispatcher finalises
        # them later as interrupted, never calling again.
        if cut:
            done, stuck_calls = await asyncio.wait(cut, timeout=CUT_GRACE_S + STOP_SLACK_S)
            for t in done:
                if not t.cancelled():
                    t.exception()  # retrieved: _call logs what matters itself
            if stuck_calls:
                # A provider that ignores cancellation must not hang the shutdown.
                log.error("%d calls did not stop when cancelled", len(stuck_calls))
        # An outcome write its cancelled caller left under way ends before the database closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outcomes.idle(), timeout=drain_s)

    # -- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                loop_now = asyncio.get_running_loop().time()
                if loop_now - self._recovered_at >= self.recover_interval_s:
                    self._recovered_at = loop_now
                    await self.recover()
                claimed = await self.claim()
                self._database_answered(True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_unavailable(exc):
                    self._database_answered(False, exc)
                else:
                    log.exception("dispatch loop failed; retrying")
                claimed = 0
            if claimed and self.inflight < self.concurrency:
                continue  # there may be more waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def claim(self) -> int:
        free = self.concurrency - self.inflight
        if free <= 0:
            return 0
        now = self.clock.now()
        params = {"free": free, "owner": self.name, "until": now + self.lease_s, "now": now}
        rows = await _CLAIM.run(self.db, params, wanted=await self.status.check())
        for r in rows:
            metrics.DISPATCH_DELAY.observe(max(0.0, now - r["created_at"]))
            request = CallRequest(int(r["id"]), r["phone"], r["code"], CallKind(r["kind"]))
            provider = self.simulator if r["is_test"] else self.provider
            task = asyncio.create_task(
                self._call(request, provider, int(r["cost"])), name=f"call-{r['id']}"
            )
            self._inflight[request.ucaller_id] = task
        return len(rows)

    async def _place(self, request: CallRequest, provider: Provider) -> CallReport:
        """The provider's report, or, past the call's deadline, the call ended (the provider
        hangs up on the wire as its task is cancelled) and reported from its last progress."""
        uid = request.ucaller_id
        deadline_s = provider.deadline_s(request)
        self._renew_until[uid] = asyncio.get_running_loop().time() + deadline_s + CUT_GRACE_S
        last: CallEvent | None = None

        async def progress(event: CallEvent) -> None:
            nonlocal last
            last = event

        timer = asyncio.timeout(deadline_s)
        try:
            async with timer:
                return await provider.place_call(request, progress)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            if not timer.expired():
                raise
            log.warning("call deadline passed", extra={"ucaller_id": uid, "deadline_s": deadline_s})
            return deadline_report(request.kind, last, deadline_s)

    async def _call(self, request: CallRequest, provider: Provider, cost: int) -> None:
        try:
            try:
                report = await self._place(request, provider)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("provider failed", extra={"ucaller_id": request.ucaller_id})
                report = CallReport(outcome=Outcome.NETWORK_ERROR, reason=f"provider error: {exc}")
            # The call is over: its lease is renewed again for as long as its outcome waits
            # for the database, however late that is past the call's deadline.
            self._renew_until.pop(request.ucaller_id, None)
            await self._keep_outcome(request.ucaller_id, report, cost)
            if self.on_final is not None:
                await self.on_final(request.ucaller_id, report)
        finally:
            self._inflight.pop(request.ucaller_id, None)
            self._renew_until.pop(request.ucaller_id, None)
            self._wake.set()

    # -- outcomes ---------------------------------------------------------------------------

    async def _keep_outcome(self, auth_id: int, report: CallReport, cost: int) -> bool:
        """Write the outcome, retrying through a database outage until it is written.

        Bounded: the call keeps its dispatch slot while its outcome waits, so a worker holds
        at most ``concurrency`` calls and waiting outcomes together, and claims nothing new
        while they wait; the lease loop keeps renewing their leases whenever it can. A
        worker told to stop keeps trying for the drain time; an outcome still not written
        then is logged (``outcome lost``) and its call is later finalised ``interrupted``.
        Whether it was written (False also when the row was no longer ours)."""
        ended = self.clock.now()  # the call's end, however late the write succeeds
        extra = {"ucaller_id": auth_id, "outcome": report.outcome.value}
        try:
            return await self._write_outcome(auth_id, report, cost, ended, extra)
        except asyncio.CancelledError:
            log.error("outcome lost: the worker stopped before writing it", extra=extra)
            raise

    async def _write_outcome(
        self, auth_id: int, report: CallReport, cost: int, ended: float, extra: dict[str, Any]
    ) -> bool:
        delay = OUTCOME_RETRY_MIN_S
        failures = 0
        while True:
            try:
                written = await self._finish(auth_id, report, owner=self.name, cost=cost, now=ended)
            except Exception as exc:
                failures += 1
                if is_unavailable(exc):
                    self._database_answered(False, exc)
                elif failures >= OUTCOME_OTHER_ERROR_ATTEMPTS:
                    log.exception("outcome lost: writing it keeps failing", extra=extra)
                    return False
                if failures == 1 or failures % 30 == 0:  # one line, then one a minute or so
                    log.warning("outcome not written yet, retrying: %s", describe(exc), extra=extra)
            else:
                if failures:
                    log.info("outcome written after %d failed attempts", failures, extra=extra)
                return written
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, OUTCOME_RETRY_MAX_S)

    async def _finish(
        self,
        auth_id: int,
        report: CallReport,
        *,
        owner: str,
        cost: int,
        now: float | None = None,
    ) -> bool:
        """Record the outcome; refund a call that did not reach the subscriber."""
        ending = _ending(auth_id, report, self.clock.now() if now is None else now, cost)
        if not await self.outcomes.finish(ending, Hold.leased_by(owner)):
            return False  # someone else finalised it (lease lost)
        metrics.CALLS.labels(report.outcome.value).inc()
        log.info(
            "call finished",
            extra={
                "ucaller_id": auth_id,
                "outcome": report.outcome.value,
                "sip_code": report.sip_code,
            },
        )
        return True

    async def recover(self) -> int:
        """Finalise calls whose dispatcher died, and inbound waits that expired."""
        now = self.clock.now()
        dead_before = now - self.lease_grace_s
        stale, expired = await self._find_unfinished(now, dead_before)
        loop_now = asyncio.get_running_loop().time()
        interrupted = CallReport(
            outcome=Outcome.INTERRUPTED,
            reason="the dispatcher stopped during the call; not retried",
        )
        unanswered = CallReport(outcome=Outcome.NO_ANSWER, reason="no inbound call in time")
        work = [
            self._finish_stale(uid, interrupted, Hold.lease_expired(dead_before), now)
            for uid in stale
            # ours and alive: its outcome is on the way (a call of ours stuck past its
            # deadline plus grace is finalised like a dead one)
            if not (uid in self._inflight and self._renew_until.get(uid, loop_now) >= loop_now)
        ]
        work += [self._finish_stale(uid, unanswered, Hold.waiting(), now) for uid in expired]
        # Together, so their outcomes share one write; every one ends before an error is raised.
        results = await asyncio.gather(*work, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return sum(r for r in results if isinstance(r, int))

    async def _find_unfinished(self, now: float, dead_before: float) -> tuple[list[int], list[int]]:
        """Calls dialing under a lease that ran out (once leases mean something), and inbound
        waits past their time."""
        async with self.db.read() as conn:
            stale: list[int] = []
            if self._leases_meaningful():
                dead = select(a.id).where(
                    a.dispatch_state == "dialing", a.lease_until < dead_before
                )
                stale = [int(i) for i in (await conn.execute(dead)).scalars()]
            overdue = select(a.id).where(
                a.dispatch_state == "waiting", a.created_at < now - INBOUND_TTL_S
            )
            return stale, [int(i) for i in (await conn.execute(overdue)).scalars()]

    def _database_answered(self, ok: bool, exc: BaseException | None = None) -> None:
        loop_now = asyncio.get_running_loop().time()
        if not ok:
            if not self._in_outage or loop_now - self._outage_logged_at >= 60:
                detail = describe(exc) if exc is not None else ""
                log.warning("database unavailable; dispatch keeps retrying: %s", detail)
                self._outage_logged_at = loop_now
            self._in_outage = True
            self._db_ok_since = None
        elif self._db_ok_since is None:
            self._db_ok_since = loop_now
            if self._in_outage:
                log.warning("database reachable again")
                self._in_outage = False

    def _leases_meaningful(self) -> bool:
        """Whether an expired lease now means a dead owner: only once this dispatcher has
        reached the database for a full lease (at start, and after every outage), in which
        time a live owner has renewed its leases or written its outcomes."""
        since = self._db_ok_since
        return since is not None and asyncio.get_running_loop().time() - since >= self.lease_s

    async def _finish_stale(self, auth_id: int, report: CallReport, hold: Hold, now: float) -> int:
        if not await self.outcomes.finish(_ending(auth_id, report, now), hold):
            return 0
        metrics.CALLS.labels(report.outcome.value).inc()
        log.warning(
            "call finalised by recovery",
            extra={"ucaller_id": auth_id, "outcome": report.outcome.value},
        )
        return 1

    async def _lease_loop(self) -> None:
        while not self._stopping:
            self._wake_lease.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_lease.wait(), self.lease_s / 3)
            now = asyncio.get_running_loop().time()
            ids = [i for i in self._inflight if self._renew_until.get(i, now) >= now]
            if self._stopping:
                break
            if not ids:
                continue
            try:
                async with self.db.write() as conn:
                    await conn.execute(
                        update(authorizations)
                        .where(
                            a.id.in_(ids), a.lease_owner == self.name, a.dispatch_state == "dialing"
                        )
                        .values(lease_until=self.clock.now() + self.lease_s)
                    )
            except Exception as exc:
                if is_unavailable(exc):
                    self._database_answered(False, exc)
                else:
                    log.exception("lease renewal failed")


def _ending(auth_id: int, report: CallReport, now: float, cost: int | None = None) -> Ending:
    return Ending(
        auth_id=auth_id,
        outcome=report.outcome.value,
        reached=report.outcome.reached,
        finished_at=now,
        caller_id=report.caller_id,
        sip_code=report.sip_code,
        sip_reason=report.reason,
        q850_cause=report.q850_cause,
        cost=cost,
    )
