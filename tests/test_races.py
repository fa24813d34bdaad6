"""Rules under real concurrency: many simultaneous HTTP requests against a running server."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from opencaller.app import create_app
from opencaller.config import Settings
from opencaller.domain.clock import FakeClock
from opencaller.domain.settings import ServiceSettings
from opencaller.runtime import Runtime
from opencaller.storage.database import Database
from opencaller.storage.db import migrate
from opencaller.storage.tables import accounts, authorizations, ledger

from .live import free_port
from .support import add_customer

pytestmark = pytest.mark.slow
UNLIMITED = ServiceSettings(rps_limit=100_000)


class ThreadedServer:
    """uvicorn serving the app on a real socket, in its own thread and event loop."""

    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        self.port = free_port()
        app = create_app(Runtime(settings, clock=clock))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server thread died")
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class Env:
    url: str
    db: Database
    clock: FakeClock

    async def customer(
        self, balance_rub: float = 100.0, settings: ServiceSettings = UNLIMITED
    ) -> tuple[int, str, int]:
        return await add_customer(self.db, balance_rub, settings=settings)

    async def burst(self, n: int, make: Any) -> list[dict[str, Any]]:
        """Send ``n`` requests at once, each built by ``make(i)`` as (method, params)."""
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=60) as client:
            start = asyncio.Event()

            async def one(i: int) -> dict[str, Any]:
                method, params = make(i)
                await start.wait()
                r = await client.get(f"/v1.0/{method}", params=params)
                body: dict[str, Any] = r.json()
                return body

            tasks = [asyncio.create_task(one(i)) for i in range(n)]
            await asyncio.sleep(0.05)
            start.set()
            return list(await asyncio.gather(*tasks))


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[ThreadedServer, FakeClock]]:
    if settings.database_url.startswith("sqlite"):
        migrate(settings.database_url)
    clock = FakeClock()
    with ThreadedServer(settings, clock) as srv:
        yield srv, clock


@pytest.fixture
async def env(server: tuple[ThreadedServer, FakeClock], settings: Settings) -> AsyncIterator[Env]:
    srv, clock = server
    db = Database(settings.database_url)
    try:
        yield Env(srv.url, db, clock)
    finally:
        await db.close()


def codes(bodies: list[dict[str, Any]]) -> Counter[Any]:
    return Counter("ok" if b["status"] else b["code"] for b in bodies)


async def test_fifty_at_once_to_one_number_let_four_through_in_a_minute(env: Env) -> None:
    sid, key, _ = await env.customer()
    t0 = env.clock.now()
    accepted = []
    for wave in range(4):  # four waves 15 s apart: each lets exactly one call through
        env.clock.t = t0 + wave * 15
        bodies = await env.burst(
            50, lambda i: ("initCall", {"service_id": sid, "key": key, "phone": "79161234567"})
        )
        got = codes(bodies)
        # The rest wait for the 15 s gap; after the fourth, the minute limit is what refuses.
        assert got == Counter({"ok": 1, (19 if wave < 3 else 18): 49}), got
        accepted += [b["ucaller_id"] for b in bodies if b["status"]]
    env.clock.t = t0 + 59.5  # fifteen seconds after the 4th; the minute still holds four
    bodies = await env.burst(
        50, lambda i: ("initCall", {"service_id": sid, "key": key, "phone": "79161234567"})
    )
    assert codes(bodies) == Counter({18: 50})
    assert len(set(accepted)) == 4
    async with env.db.read() as conn:
        n = (
            await conn.execute(select(func.count()).where(authorizations.c.phone == "79161234567"))
        ).scalar()
    assert n == 4


async def test_fifty_at_once_with_one_unique_make_one_authorization(env: Env) -> None:
    sid, key, aid = await env.customer()
    bodies = await env.burst(
        50,
        lambda i: (
            "initCall",
            {"service_id": sid, "key": key, "phone": "79161234567", "unique": "same-key"},
        ),
    )
    assert all(b["status"] for b in bodies), codes(bodies)
    assert len({b["ucaller_id"] for b in bodies}) == 1
    assert sum(1 for b in bodies if b["exists"] is False) == 1
    async with env.db.read() as conn:
        auths = (
            await conn.execute(select(func.count()).where(authorizations.c.service_id == sid))
        ).scalar()
        charges = (
            await conn.execute(
                select(func.count()).where(ledger.c.account_id == aid, ledger.c.kind == "charge")
            )
        ).scalar()
    assert auths == 1
    assert charges == 1


async def test_hundred_charges_against_a_balance_for_ten(env: Env) -> None:
    sid, key, aid = await env.customer(balance_rub=3.0)  # ten calls at 0.30
    bodies = await env.burst(
        100, lambda i: ("initCall", {"service_id": sid, "key": key, "phone": f"7916{i:07d}"})
    )
    got = codes(bodies)
    assert got == Counter({"ok": 10, 1002: 90}), got
    async with httpx.AsyncClient(base_url=env.url) as client:
        balance = (
            await client.get("/v1.0/getBalance", params={"service_id": sid, "key": key})
        ).json()
    assert balance["rub_balance"] == 0
    async with env.db.read() as conn:
        charges = (
            await conn.execute(
                select(func.count()).where(ledger.c.account_id == aid, ledger.c.kind == "charge")
            )
        ).scalar()
    assert charges == 10


async def test_hourly_limit_stops_at_its_value_under_a_burst(env: Env) -> None:
    sid, key, _ = await env.customer(settings=ServiceSettings(rps_limit=100_000, hourly_limit=7))
    bodies = await env.burst(
        30, lambda i: ("initCall", {"service_id": sid, "key": key, "phone": f"7916{i:07d}"})
    )
    assert codes(bodies) == Counter({"ok": 7, 50: 23})
    env.clock.advance(3600.5)
    bodies = await env.burst(
        10, lambda i: ("initCall", {"service_id": sid, "key": key, "phone": f"7926{i:07d}"})
    )
    assert codes(bodies) == Counter({"ok": 7, 50: 3})


async def test_a_burst_of_paid_calls_leaves_an_exact_ledger(env: Env) -> None:
    """However the writes were grouped, the ledger reads like one charge after another: every
    balance from the start down to the end once, each authorization's getInfo balance the one
    before its own charge."""
    sid, key, aid = await env.customer(balance_rub=30.0)
    bodies = await env.burst(
        60, lambda i: ("initCall", {"service_id": sid, "key": key, "phone": f"7926{i:07d}"})
    )
    assert codes(bodies) == Counter({"ok": 60})
    price = 3000  # 0.30 rouble in 1/10000 units
    start = 30 * 10_000
    async with env.db.read() as conn:
        entries = (
            await conn.execute(
                select(ledger.c.authorization_id, ledger.c.balance_after, ledger.c.amount).where(
                    ledger.c.account_id == aid, ledger.c.kind == "charge"
                )
            )
        ).all()
        before = dict(
            (
                await conn.execute(
                    select(authorizations.c.id, authorizations.c.balance_before).where(
                        authorizations.c.account_id == aid
                    )
                )
            ).all()
        )
    assert sorted(e.balance_after for e in entries) == [start - k * price for k in range(60, 0, -1)]
    assert all(e.amount == -price for e in entries)
    assert all(before[e.authorization_id] == e.balance_after + price for e in entries)
    async with httpx.AsyncClient(base_url=env.url) as client:
        balance = (
            await client.get("/v1.0/getBalance", params={"service_id": sid, "key": key})
        ).json()
    assert balance["rub_balance"] == 12.0


# -- batched writes (domain/batches.py) ---------------------------------------------------------

BATCHES = 'opencaller_write_batch_{}{{operation="create_authorization"}}'


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@contextlib.asynccontextmanager
async def writes_held(db_url: str, account_id: int) -> AsyncIterator[None]:
    """Hold what every paid initCall of the account must write to (SQLite's write lock, the
    account's row on PostgreSQL) while the block runs, so the requests that arrive meanwhile
    queue behind the one in flight and are written together when it is let go."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(db_url).database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
            conn.close()
        return
    pg = await asyncpg.connect(
        make_url(db_url).set(drivername="postgresql").render_as_string(False)
    )
    try:
        async with pg.transaction():
            await pg.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            yield
    finally:
        await pg.close()


async def burst_held(env: Env, db_url: str, account_id: int, n: int, make: Any) -> list[Any]:
    """``env.burst`` with the account's writes held for a moment after the requests left."""
    async with writes_held(db_url, account_id):
        sent = asyncio.ensure_future(env.burst(n, make))
        await asyncio.sleep(0.5)  # let them reach the server and queue
    return list(await sent)


async def test_a_batch_charges_like_one_request_after_another(env: Env, settings: Settings) -> None:
    """Voice (2.00) and flash (0.30) requests of one account queue together against a balance
    for a few of them: whichever went through, each one refused did not fit the balance that
    was left, and the ledger reads like one charge after another."""
    sid, key, aid = await env.customer(balance_rub=5.0)
    voice, flash = 20_000, 3_000
    start = 5 * 10_000
    batches = await metric(env.url, BATCHES.format("size_count"))
    written = await metric(env.url, BATCHES.format("size_sum"))

    def make(i: int) -> tuple[str, dict[str, Any]]:
        params = {"service_id": sid, "key": key, "phone": f"7926{i:07d}"}
        return "initCall", {**params, "voice": 1} if i % 2 else params

    bodies = await burst_held(env, settings.database_url, aid, 40, make)
    got = codes(bodies)
    assert set(got) <= {"ok", 1002}, got
    price = {i: voice if i % 2 else flash for i in range(40)}
    paid = sum(price[i] for i, b in enumerate(bodies) if b["status"])
    async with httpx.AsyncClient(base_url=env.url) as client:
        balance = (
            await client.get("/v1.0/getBalance", params={"service_id": sid, "key": key})
        ).json()
    left = round(balance["rub_balance"] * 10_000)
    assert left == start - paid
    assert all(price[i] > left for i, b in enumerate(bodies) if not b["status"])
    async with env.db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    authorizations.c.id,
                    authorizations.c.cost,
                    authorizations.c.balance_before,
                    ledger.c.balance_after,
                    ledger.c.amount,
                    ledger.c.reason,
                )
                .join(ledger, ledger.c.authorization_id == authorizations.c.id)
                .where(authorizations.c.account_id == aid, ledger.c.kind == "charge")
                .order_by(authorizations.c.id)
            )
        ).all()
    assert len(rows) == got["ok"]
    assert sum(r.amount for r in rows) == left - start
    balance_then = start
    for r in rows:  # in the order written: each charge starts where the one before ended
        assert r.balance_before == balance_then
        assert r.balance_after == r.balance_before - r.cost == r.balance_before + r.amount
        assert r.reason == f"{'voice' if r.cost == voice else 'flash'} #{r.id}"
        balance_then = r.balance_after
    if settings.redis_url or settings.database_url.startswith("sqlite"):
        # Requests were written together: fewer writes than requests written.
        assert await metric(env.url, BATCHES.format("size_sum")) - written >= 40
        assert await metric(env.url, BATCHES.format("size_count")) - batches < 40


async def test_a_failed_batch_is_logged_counted_and_written_one_by_one(
    env: Env, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A row the database refuses (a trigger stands for a broken constraint) fails the whole
    batch; it is written again one by one, so only that request fails."""
    if not (settings.redis_url or settings.database_url.startswith("sqlite")):
        pytest.skip("PostgreSQL without Redis writes each initCall in its own transaction")
    sid, key, aid = await env.customer()
    bad = "79169999999"
    async with refused_phone(settings.database_url, bad):
        failures = await metric(env.url, BATCHES.format("failures_total"))
        for attempt in range(5):  # the bad one may be the request in flight, written alone

            def make(i: int, attempt: int = attempt) -> tuple[str, dict[str, Any]]:
                phone = bad if i == 7 else f"7927{attempt}{i:06d}"
                return "initCall", {"service_id": sid, "key": key, "phone": phone}

            bodies = await burst_held(env, settings.database_url, aid, 20, make)
            assert [b["code"] for b in bodies if not b["status"]] == [500]
            assert not bodies[7]["status"]
            if await metric(env.url, BATCHES.format("failures_total")) > failures:
                break
        else:
            pytest.fail("the bad row was never written in a batch")
    assert "batched write failed, writing one by one" in caplog.text
    assert "refused by the test" in caplog.text
    async with env.db.read() as conn:
        n = (
            await conn.execute(select(func.count()).where(authorizations.c.account_id == aid))
        ).scalar()
    assert n == 19 * (attempt + 1)


@contextlib.asynccontextmanager
async def refused_phone(db_url: str, phone: str) -> AsyncIterator[None]:
    """The database refuses any new authorization for ``phone``, as a constraint would."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(db_url).database or "", isolation_level=None)
        conn.execute(
            f"CREATE TRIGGER refuse_phone BEFORE INSERT ON authorizations"
            f" WHEN NEW.phone = '{phone}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        try:
            yield
        finally:
            conn.execute("DROP TRIGGER refuse_phone")
            conn.close()
        return
    pg = await asyncpg.connect(
        make_url(db_url).set(drivername="postgresql").render_as_string(False)
    )
    try:
        await pg.execute(
            f"""CREATE FUNCTION refuse_phone() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.phone = '{phone}' THEN RAISE EXCEPTION 'refused by the test'; END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_phone BEFORE INSERT ON authorizations
              FOR EACH ROW EXECUTE FUNCTION refuse_phone();"""
        )
        yield
    finally:
        await pg.execute(
            "DROP TRIGGER IF EXISTS refuse_phone ON authorizations;"
            " DROP FUNCTION IF EXISTS refuse_phone()"
        )
        await pg.close()


@pytest.fixture
def two_nodes(settings: Settings) -> Iterator[tuple[ThreadedServer, ThreadedServer]]:
    if settings.database_url.startswith("sqlite"):
        migrate(settings.database_url)
    with ThreadedServer(settings, FakeClock()) as one, ThreadedServer(settings, FakeClock()) as two:
        yield one, two


async def test_two_nodes_on_one_database_keep_the_limits(
    two_nodes: tuple[ThreadedServer, ThreadedServer], settings: Settings
) -> None:
    """Two API nodes with their own writers on one database (one SQLite file: as two
    processes would share it): a burst spread over both keeps every limit exact."""
    db = Database(settings.database_url)
    try:
        sid, key, aid = await add_customer(db, 3.0, settings=UNLIMITED)  # ten at 0.30
        nodes = [Env(node.url, db, FakeClock()) for node in two_nodes]

        async def spread(n: int, make: Any) -> list[dict[str, Any]]:
            half = n // 2
            halves = await asyncio.gather(
                *(
                    node.burst(half, lambda i, k=k: make(k * half + i))
                    for k, node in enumerate(nodes)
                )
            )
            return [b for half in halves for b in half]

        same = {"service_id": sid, "key": key, "phone": "79161234567"}
        assert codes(await spread(40, lambda i: ("initCall", same))) == Counter({"ok": 1, 19: 39})
        paid = await spread(
            60, lambda i: ("initCall", {"service_id": sid, "key": key, "phone": f"7936{i:07d}"})
        )
        assert codes(paid) == Counter({"ok": 9, 1002: 51})
        async with db.read() as conn:
            balance = (
                await conn.execute(select(accounts.c.balance).where(accounts.c.id == aid))
            ).scalar()
            charges = (
                await conn.execute(
                    select(func.count(), func.sum(ledger.c.amount)).where(
                        ledger.c.account_id == aid, ledger.c.kind == "charge"
                    )
                )
            ).one()
        assert balance == 0
        assert tuple(charges) == (10, -30_000)
    finally:
        await db.close()
