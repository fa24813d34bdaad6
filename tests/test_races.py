"""Rules under real concurrency: many simultaneous HTTP requests against a running server."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from opencaller.app import create_app
from opencaller.config import Settings
from opencaller.domain.clock import FakeClock
from opencaller.domain.settings import ServiceSettings
from opencaller.runtime import Runtime
from opencaller.storage.database import Database
from opencaller.storage.db import migrate
from opencaller.storage.tables import authorizations, ledger

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
