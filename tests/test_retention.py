"""Retention: `opencaller purge` and the worker's periodic job delete old finished
authorizations (whole repeat chains) and settled webhook deliveries, and nothing else: not
the ledger, not calls still queued, not rows any limit window still reads."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select, update
from typer.testing import CliRunner

from opencaller.cli.main import app
from opencaller.config import Settings
from opencaller.domain.clock import FakeClock
from opencaller.storage.database import Database
from opencaller.storage.tables import ledger
from opencaller.storage.webhook_tables import webhook_outbox
from opencaller.webhooks.outbox import enqueue

from .support import Api, make_api

DAY = 86_400.0


async def ledger_rows(db: Database) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(select(ledger).order_by(ledger.c.id))).all())


async def code_of(api: Api, method: str, **params: Any) -> int | None:
    body = await api.get(method, **params)
    return None if body["status"] is True else int(body["code"])


async def purge_cli(settings: Settings, *args: str) -> str:
    env = {
        "OPENCALLER_DATABASE_URL": settings.database_url,
        "OPENCALLER_RETENTION_DAYS": str(settings.retention_days),
        "OPENCALLER_WEBHOOK_RETENTION_DAYS": str(settings.webhook_retention_days),
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, ["purge", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


async def webhook(db: Database, service_id: int, *, at: float, delivered: bool) -> int:
    async with db.write() as conn:
        wid = await enqueue(
            conn, service_id=service_id, url="http://127.0.0.1:9/", event="x", body=b"{}", now=at
        )
        if delivered:
            await conn.execute(
                update(webhook_outbox)
                .where(webhook_outbox.c.id == wid)
                .values(state="delivered", attempts=1, delivered_at=at + 1)
            )
    return wid


async def webhook_ids(db: Database) -> set[int]:
    async with db.read() as conn:
        return set((await conn.scalars(select(webhook_outbox.c.id))).all())


async def test_purge_deletes_old_finished_chains_and_keeps_the_rest(
    settings: Settings, clock: FakeClock
) -> None:
    now = time.time()
    settings = settings.model_copy(update={"retention_days": 30.0, "webhook_retention_days": 7.0})
    # Forty days ago: a call and its free repeat, finished. Yesterday: another, finished.
    clock.t = now - 40 * DAY
    async with make_api(settings, clock) as api:
        old = (await api.get("initCall", phone="79161234567", unique="old-key"))["ucaller_id"]
        await api.wait_final(old)
        clock.advance(20)
        repeat = (await api.get("initRepeat", uid=old))["ucaller_id"]
        await api.wait_final(repeat)
        clock.t = now - DAY
        recent = (await api.get("initCall", phone="79161234568", unique="new-key"))["ucaller_id"]
        await api.wait_final(recent)
        sid, aid, key = api.service_id, api.account_id, api.key
    # Forty days ago too, but never dialled (no dispatcher running): still in the queue.
    async with make_api(settings, clock, dispatch=False) as queued_api:
        clock.t = now - 40 * DAY
        queued = (await queued_api.get("initCall", phone="79161234569"))["ucaller_id"]
        db = queued_api.rt.db
        old_hook = await webhook(db, queued_api.service_id, at=now - 10 * DAY, delivered=True)
        failing = await webhook(db, queued_api.service_id, at=now - 10 * DAY, delivered=False)
        new_hook = await webhook(db, queued_api.service_id, at=now - DAY, delivered=True)
        money_before = await ledger_rows(db)
        balance_before = (await api_as(queued_api, sid, key).get("getBalance"))["rub_balance"]

        out = await purge_cli(settings, "--dry-run")
        assert "would delete 2 authorizations" in out, out
        assert "would delete 1 webhook deliveries" in out, out
        assert await code_of(api_as(queued_api, sid, key), "getInfo", uid=old) is None

        out = await purge_cli(settings)
        assert "deleted 2 authorizations" in out, out
        assert "deleted 1 webhook deliveries" in out, out
        assert "deleted 0" in (await purge_cli(settings)), "a second purge finds nothing"

        a = api_as(queued_api, sid, key)
        assert await code_of(a, "getInfo", uid=old) == 10  # as if it never existed
        assert await code_of(a, "getInfo", uid=repeat) == 10
        assert await code_of(a, "initRepeat", uid=old) == 10
        assert await code_of(a, "getInfo", uid=recent) is None
        assert await code_of(queued_api, "getInfo", uid=queued) is None
        # The recent idempotency key is still remembered.
        again = await a.get("initCall", phone="79161234568", unique="new-key")
        assert again["ucaller_id"] == recent and again["exists"] is True
        # Money: every ledger row kept, balance unchanged.
        assert await ledger_rows(db) == money_before
        assert any(r.account_id == aid and r.authorization_id == old for r in money_before)
        assert (await a.get("getBalance"))["rub_balance"] == balance_before
        assert await webhook_ids(db) == {failing, new_hook}
        assert old_hook not in await webhook_ids(db)


def api_as(api: Api, service_id: int, key: str) -> Api:
    """The same app, authenticated as another service of the same database."""
    return Api(api.rt, api.client, service_id, key, 0)


async def test_limits_still_hold_after_a_purge(settings: Settings, clock: FakeClock) -> None:
    # Retention shorter than the 24 h window is raised to the floor: the day's calls stay.
    settings = settings.model_copy(update={"retention_days": 0.01})
    async with make_api(settings, clock) as api:
        t0 = clock.now()
        last = 0
        for _ in range(30):
            last = (await api.get("initCall", phone="79161234567"))["ucaller_id"]
            clock.advance(61)
        await api.wait_final(last)
        clock.t = t0 + DAY - 10
        out = await purge_cli(settings)
        assert "deleted 0 authorizations" in out
        assert await code_of(api, "initCall", phone="79161234567") == 18
        assert await code_of(api, "getInfo", uid=last) is None


async def test_the_worker_purges_periodically(settings: Settings, clock: FakeClock) -> None:
    now = time.time()
    settings = settings.model_copy(
        update={"retention_days": 3.0, "webhook_retention_days": 1.0, "retention_interval_s": 0.2}
    )
    clock.t = now - 5 * DAY
    async with make_api(settings, clock) as api:
        old = (await api.get("initCall", phone="79161234567"))["ucaller_id"]
        assert (await api.wait_final(old, within_s=60))["call_status"] != -1
        money = await ledger_rows(api.rt.db)
        hook = await webhook(api.rt.db, api.service_id, at=now - 2 * DAY, delivered=True)
        clock.t = now
        recent = (await api.get("initCall", phone="79161234568"))["ucaller_id"]
        deadline = asyncio.get_running_loop().time() + 60  # generous: a busy machine
        while await code_of(api, "getInfo", uid=old) != 10:
            assert asyncio.get_running_loop().time() < deadline, "never purged"
            await asyncio.sleep(0.2)
        while hook in await webhook_ids(api.rt.db):
            assert asyncio.get_running_loop().time() < deadline, "webhook never purged"
            await asyncio.sleep(0.2)
        assert await code_of(api, "getInfo", uid=recent) is None
        assert (await ledger_rows(api.rt.db))[: len(money)] == money
        async with api.rt.db.read() as conn:
            n = (await conn.execute(select(func.count()).select_from(ledger))).scalar_one()
        assert n >= len(money)


async def test_settled_status_events_are_purged_like_webhook_deliveries(
    settings: Settings, clock: FakeClock
) -> None:
    from opencaller.storage.webhook_tables import status_events

    now = time.time()
    settings = settings.model_copy(update={"retention_days": 0.0, "webhook_retention_days": 7.0})
    async with make_api(settings, clock, dispatch=False) as api:
        rows = {
            "old_delivered": (now - 10 * DAY, "delivered"),
            "old_failed": (now - 10 * DAY, "failed"),
            "old_pending": (now - 10 * DAY, "pending"),  # still to be sent: kept
            "new_delivered": (now - DAY, "delivered"),
        }
        async with api.rt.db.write() as conn:
            for name, (at, state) in rows.items():
                await conn.execute(
                    status_events.insert().values(
                        event_id=name,
                        service_id=api.service_id,
                        authorization_id=1,
                        event="dialing",
                        occurred_at=at,
                        state=state,
                        attempts=1,
                        next_attempt_at=at,
                        created_at=at,
                        delivered_at=at + 1 if state == "delivered" else None,
                    )
                )
        assert "would delete 2 webhook deliveries" in await purge_cli(settings, "--dry-run")
        assert "deleted 2 webhook deliveries" in await purge_cli(settings)
        async with api.rt.db.read() as conn:
            left = set((await conn.scalars(select(status_events.c.event_id))).all())
    assert left == {"old_pending", "new_delivered"}
