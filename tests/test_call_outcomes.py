"""Finishing calls (domain/call_outcomes.py): outcomes written many at a time, each still
getting its own result, and a refund written exactly once however writers race."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from sqlalchemy import func, select, text, update

from opencaller.config import Settings
from opencaller.domain import status_events
from opencaller.domain.call_outcomes import CallOutcomes, Ending, Hold
from opencaller.domain.clock import FakeClock
from opencaller.domain.money import to_rub, to_units
from opencaller.storage.tables import authorizations as t
from opencaller.storage.tables import ledger
from opencaller.storage.webhook_tables import status_events as se

from .support import Api, make_api

NOW = 1_767_225_600.0
PRICE = to_units("0.30")  # the default tariff's flash call
FAILURES = re.compile(
    r'^opencaller_write_batch_failures_total\{operation="finish_call"\} (\S+)$', re.M
)


async def dialing(api: Api, count: int, owner: str, lease_until: float) -> list[int]:
    """Paid calls that a dispatcher named ``owner`` has claimed and is placing."""
    ids = [
        (await api.get("initCall", phone=f"7901000{i:04d}"))["ucaller_id"]
        for i in range(1, count + 1)
    ]
    async with api.rt.db.write() as conn:
        await conn.execute(
            update(t)
            .where(t.c.id.in_(ids))
            .values(dispatch_state="dialing", lease_owner=owner, lease_until=lease_until)
        )
    return ids


async def failed_batches(api: Api) -> float:
    found = FAILURES.search((await api.client.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


async def refunds(api: Api, ids: list[int]) -> dict[int, int]:
    async with api.rt.db.read() as conn:
        rows = await conn.execute(
            select(ledger.c.authorization_id, func.count())
            .where(ledger.c.kind == "refund", ledger.c.authorization_id.in_(ids))
            .group_by(ledger.c.authorization_id)
        )
        return {int(i): int(n) for i, n in rows}


async def test_a_failed_batch_is_counted_and_every_other_call_gets_its_outcome_and_refund(
    settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A row the database refuses (a caller ID wider than its column) fails its batch: the
    failure is logged and counted in /metrics, and the batch is written again row by row, so
    every other call still gets its outcome and its refund, and only the refused one fails."""
    async with make_api(settings, clock, dispatch=False) as api:
        ids = await dispatching_batch_setup(api)
        reached, unreached, bad_reached, bad_unreached = ids[:3], ids[3:6], ids[6], ids[7]
        before = await failed_batches(api)
        outcomes = CallOutcomes(api.rt.db)

        def ending(uid: int, ok: bool, caller_id: str = "79001230000") -> Ending:
            outcome = "delivered" if ok else "busy"
            return Ending(uid, outcome, ok, NOW, caller_id=caller_id, sip_code=180, cost=PRICE)

        too_wide = "7" * 24  # caller_id is 20 characters wide
        endings = [ending(u, True) for u in reached] + [ending(u, False) for u in unreached]
        endings += [ending(bad_reached, True, too_wide), ending(bad_unreached, False, too_wide)]
        with caplog.at_level(logging.WARNING, logger="opencaller.outcomes"):
            results = await asyncio.gather(
                *(outcomes.finish(e, Hold.leased_by("me")) for e in endings),
                return_exceptions=True,
            )

        assert results[:6] == [True] * 6
        assert all(isinstance(r, Exception) for r in results[6:]), results
        # PostgreSQL writes the reached calls in one statement and the refunded ones in one
        # transaction: each held a refused row. SQLite writes all of them in one transaction.
        batches = 1 if api.rt.db.sqlite else 2
        assert await failed_batches(api) - before == batches
        failed = [r for r in caplog.records if r.message.startswith("outcome batch failed")]
        assert len(failed) == batches
        infos = {u: await api.get("getInfo", uid=u) for u in ids}
        assert [infos[u]["call_status"] for u in ids] == [1, 1, 1, 0, 0, 0, -1, -1]
        assert {infos[u]["call_outcome"] for u in unreached} == {"busy"}
        # Eight calls charged, the three unreached ones given back, each once.
        assert (await api.get("getBalance"))["rub_balance"] == to_rub(to_units(100) - 5 * PRICE)
        assert await refunds(api, ids) == {u: 1 for u in unreached}


async def dispatching_batch_setup(api: Api) -> list[int]:
    """Eight paid calls claimed by the dispatcher ``me``; the database refuses a caller ID
    wider than its column (PostgreSQL does so itself; on SQLite a trigger does the same)."""
    if api.rt.db.sqlite:
        async with api.rt.db.write() as conn:
            await conn.execute(
                text(
                    "CREATE TRIGGER caller_id_width BEFORE UPDATE OF caller_id ON authorizations"
                    " WHEN length(NEW.caller_id) > 20"
                    " BEGIN SELECT RAISE(ABORT, 'value too long for caller_id'); END"
                )
            )
    return await dialing(api, 8, "me", NOW + 30)


async def test_owner_and_recovery_racing_refund_a_call_once(
    settings: Settings, clock: FakeClock
) -> None:
    """A dispatcher writes its unreached calls' outcomes just as another one's recovery finds
    their leases expired: each call is finished by exactly one of them and refunded once."""
    async with make_api(settings, clock, dispatch=False) as api:
        ids = await dialing(api, 12, "me", lease_until=NOW - 60)

        def ended(uid: int, outcome: str) -> Ending:
            return Ending(uid, outcome, False, NOW, sip_code=486, cost=PRICE)

        def race(uid: int) -> tuple[asyncio.Task[bool], asyncio.Task[bool]]:
            """Both writers of one call, each its own service (as in two processes); which
            starts first alternates from call to call. (owner's, recovery's)"""
            owner = CallOutcomes(api.rt.db).finish(ended(uid, "busy"), Hold.leased_by("me"))
            recovery = CallOutcomes(api.rt.db).finish(
                ended(uid, "interrupted"), Hold.lease_expired(NOW - 30)
            )
            if uid % 2:
                return asyncio.create_task(owner), asyncio.create_task(recovery)
            second = asyncio.create_task(recovery)
            return asyncio.create_task(owner), second

        tasks = [race(uid) for uid in ids]
        results = await asyncio.gather(*(job for pair in tasks for job in pair))

        won = [(results[2 * i], results[2 * i + 1]) for i in range(len(ids))]
        assert all(pair in ((True, False), (False, True)) for pair in won), won
        infos = [await api.get("getInfo", uid=u) for u in ids]
        for (by_owner, _), info in zip(won, infos, strict=True):
            assert info["call_status"] == 0
            assert info["call_outcome"] == ("busy" if by_owner else "interrupted")
        assert await refunds(api, ids) == {u: 1 for u in ids}
        assert (await api.get("getBalance"))["rub_balance"] == 100


async def test_each_way_of_finishing_records_its_finished_event_with_the_outcome(
    settings: Settings, clock: FakeClock
) -> None:
    """With a status_url on the service, every finish records one ``finished`` event with the
    outcome it wrote: a reached call under its lease (on PostgreSQL the one-statement batch),
    an unreached one with its refund, and one finalised by recovery. While the installation's
    watch reads no status_url, the same writes record nothing."""
    async with make_api(settings, clock, dispatch=False) as api:
        # A node that read "no status_url anywhere" keeps that for its refresh time.
        off = status_events.Watch(api.rt.db, refresh_s=3600)
        assert await off.check() is False
        async with api.rt.db.write() as conn:
            await status_events.set_status_url(conn, api.service_id, "https://example.com/s")
        reached, unreached, stale, quiet = await dialing(api, 4, "me", lease_until=NOW + 30)
        on = status_events.Watch(api.rt.db)
        assert await on.check() is True
        outcomes = CallOutcomes(api.rt.db, on)
        results = await asyncio.gather(
            outcomes.finish(
                Ending(reached, "delivered", True, NOW, sip_code=180), Hold.leased_by("me")
            ),
            outcomes.finish(
                Ending(unreached, "busy", False, NOW, sip_code=486, cost=PRICE),
                Hold.leased_by("me"),
            ),
            outcomes.finish(Ending(stale, "interrupted", False, NOW), Hold.lease_expired(NOW + 60)),
        )
        assert results == [True, True, True]
        assert await off.check() is False
        quiet_ending = Ending(quiet, "delivered", True, NOW, sip_code=180)
        assert await CallOutcomes(api.rt.db, off).finish(quiet_ending, Hold.leased_by("me"))

        async with api.rt.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        se.c.authorization_id,
                        se.c.event,
                        se.c.call_status,
                        se.c.outcome,
                        se.c.sip_code,
                    ).order_by(se.c.authorization_id)
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            (reached, "finished", 1, "delivered", 180),
            (unreached, "finished", 0, "busy", 486),
            (stale, "finished", 0, "interrupted", None),
        ]
        assert await refunds(api, [reached, unreached, stale]) == {unreached: 1, stale: 1}
