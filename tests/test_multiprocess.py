"""Several real processes on one PostgreSQL and Redis: three API nodes, two workers.

Racing requests spread over the nodes must keep every rule exact, every accepted ucaller_id
must be called exactly once (the simulator's fsynced log is what "the network" saw), and a
worker killed with SIGKILL mid-call must lose nothing and cause no second call.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opencaller.domain import limits
from opencaller.storage.database import Database
from opencaller.storage.tables import accounts, authorizations, ledger

from .cluster import Cluster, cluster, flash_price, new_customer, wait_final
from .support import pg_database

PG_URL = os.environ.get("OPENCALLER_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("OPENCALLER_TEST_REDIS_URL", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PG_URL and REDIS_URL),
        reason="multi-process tests need PostgreSQL and Redis: set OPENCALLER_TEST_DATABASE_URL"
        " and OPENCALLER_TEST_REDIS_URL (scripts/test does in its second run)",
    ),
]


@pytest.fixture(scope="module")
def private_db() -> Iterator[str]:
    with pg_database(PG_URL) as url:
        yield url


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A database of its own, so the module's running cluster cannot take these calls."""
    with pg_database(PG_URL) as url:
        yield url


@pytest.fixture(scope="module")
def nodes(private_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    with cluster(
        private_db,
        REDIS_URL,
        workdir,
        api_nodes=3,
        workers=2,
        poll_interval_s=0.5,
        simulator__delay_s=0.3,
    ) as c:
        yield c


def phone() -> str:
    return f"7916{random.randrange(10**7):07d}"


async def spread(
    c: Cluster, n: int, params: dict[str, Any] | list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``n`` initCalls at once, round-robin over the API nodes."""
    limits_ = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits_) as client:
        start = asyncio.Event()

        async def one(i: int) -> dict[str, Any]:
            p = params[i] if isinstance(params, list) else params
            port = c.ports[i % len(c.ports)]
            await start.wait()
            r = await client.get(f"http://127.0.0.1:{port}/v1.0/initCall", params=p)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*tasks)


async def assert_called_once_and_final(c: Cluster, ids: list[int]) -> None:
    rows = await wait_final(c.db_url, ids)
    assert sorted(rows) == sorted(ids)
    not_final = [i for i, r in rows.items() if r.call_status == -1]
    assert not not_final, f"not final: {not_final}\n{c.logs()}"
    called = Counter(int(call["ucaller_id"]) for call in c.calls())
    assert {i: called[i] for i in ids} == dict.fromkeys(ids, 1)


async def count(db_url: str, query: Any) -> int:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.close()


def accepted(bodies: list[dict[str, Any]]) -> list[int]:
    return [int(b["ucaller_id"]) for b in bodies if b["status"] is True]


async def test_one_number_from_three_nodes(nodes: Cluster) -> None:
    sid, key, _ = await new_customer(nodes.db_url)
    number = phone()
    bodies = await spread(nodes, 50, {"service_id": sid, "key": key, "phone": number})
    ok = accepted(bodies)
    # The 15 s gap refuses a second call long before the per-minute limit could be reached.
    expected = 1 if limits.MIN_GAP_S > 0 else limits.PER_MINUTE
    assert len(ok) == expected, bodies
    refused = Counter(b["code"] for b in bodies if b["status"] is False)
    assert sum(refused.values()) == 50 - expected
    assert set(refused) <= {int(limits.Code.NUMBER_LIMIT), int(limits.Code.NUMBER_WAIT)}
    rows = await count(nodes.db_url, select(func.count()).where(authorizations.c.phone == number))
    assert rows == expected
    await assert_called_once_and_final(nodes, ok)


async def test_one_unique_key_makes_one_authorization_and_one_charge(nodes: Cluster) -> None:
    sid, key, aid = await new_customer(nodes.db_url)
    params = {"service_id": sid, "key": key, "phone": phone(), "unique": "order-77"}
    bodies = await spread(nodes, 50, params)
    assert all(b["status"] is True for b in bodies), bodies
    ids = {int(b["ucaller_id"]) for b in bodies}
    assert len(ids) == 1
    auths = await count(
        nodes.db_url, select(func.count()).where(authorizations.c.service_id == sid)
    )
    charges = await count(
        nodes.db_url,
        select(func.count()).where(ledger.c.account_id == aid, ledger.c.kind == "charge"),
    )
    assert (auths, charges) == (1, 1)
    await assert_called_once_and_final(nodes, sorted(ids))


async def test_balance_for_ten_calls_pays_for_exactly_ten(nodes: Cluster) -> None:
    price = await flash_price(nodes.db_url)
    assert price > 0
    sid, key, aid = await new_customer(nodes.db_url, balance_units=10 * price + price // 2)
    params = [{"service_id": sid, "key": key, "phone": phone()} for _ in range(100)]
    bodies = await spread(nodes, 100, params)
    ok = accepted(bodies)
    assert len(ok) == 10
    assert {b["code"] for b in bodies if b["status"] is False} == {1002}
    balance = await count(nodes.db_url, select(accounts.c.balance).where(accounts.c.id == aid))
    charges = await count(
        nodes.db_url,
        select(func.count()).where(ledger.c.account_id == aid, ledger.c.kind == "charge"),
    )
    # Calls to ordinary numbers are delivered by the simulator: nothing is refunded.
    await assert_called_once_and_final(nodes, ok)
    assert charges == 10
    assert balance == price // 2


async def test_hourly_limit_holds_across_nodes(nodes: Cluster) -> None:
    sid, key, _ = await new_customer(nodes.db_url, hourly_limit=7)
    params = [{"service_id": sid, "key": key, "phone": phone()} for _ in range(60)]
    bodies = await spread(nodes, 60, params)
    ok = accepted(bodies)
    assert len(ok) == 7
    assert {b["code"] for b in bodies if b["status"] is False} == {50}
    await assert_called_once_and_final(nodes, ok)


def test_workers_drain_on_sigterm(fresh_db: str, tmp_path: Path) -> None:
    """SIGTERM: the worker stops claiming, finishes its calls and exits 0."""
    with cluster(
        fresh_db, REDIS_URL, tmp_path, api_nodes=1, workers=1, simulator__delay_s=1.5
    ) as c:
        sid, key, _ = asyncio.run(new_customer(c.db_url))
        bodies = asyncio.run(
            spread(c, 3, [{"service_id": sid, "key": key, "phone": phone()} for _ in range(3)])
        )
        ids = accepted(bodies)
        assert len(ids) == 3
        deadline = time.monotonic() + 20
        while len(c.calls()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = c.workers[0]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        rows = asyncio.run(wait_final(c.db_url, ids, within=1))
        assert {r.outcome for r in rows.values()} == {"delivered"}, c.logs()


def test_sigkill_of_a_worker_mid_call(fresh_db: str, tmp_path: Path) -> None:
    """The killed worker's calls end as interrupted (never redialled); the other worker
    places every call still queued; every ucaller_id is final and called at most once."""
    with cluster(
        fresh_db,
        REDIS_URL,
        tmp_path,
        api_nodes=1,
        workers=2,
        lease_s=2,
        dispatch_concurrency=3,
        poll_interval_s=0.3,
        simulator__delay_s=2.5,
    ) as c:
        sid, key, _ = asyncio.run(new_customer(c.db_url))
        params = [{"service_id": sid, "key": key, "phone": phone()} for _ in range(16)]
        bodies = asyncio.run(spread(c, 16, params))
        ids = accepted(bodies)
        assert len(ids) == 16, c.logs()
        deadline = time.monotonic() + 20
        while not c.calls() and time.monotonic() < deadline:
            time.sleep(0.02)
        victim_pid = int(c.calls()[0]["pid"])
        victim = next(p for p in c.workers if p.pid == victim_pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_calls = {int(x["ucaller_id"]) for x in c.calls() if x["pid"] == victim_pid}

        rows = asyncio.run(wait_final(c.db_url, ids, within=50))
        assert all(r.call_status != -1 for r in rows.values()), c.logs()
        called = Counter(int(x["ucaller_id"]) for x in c.calls())
        assert max(called.values()) == 1  # nobody was called twice
        assert killed_calls and killed_calls <= set(ids)
        # Rows the victim had claimed but not yet dialled when it died: ended, never rung.
        owners = {i: (r.lease_owner or "").split(":") for i, r in rows.items()}
        claimed = {i for i, parts in owners.items() if parts[1:2] == [str(victim_pid)]}
        for i in ids:
            if i in killed_calls:
                assert rows[i].outcome == "interrupted" and rows[i].call_status == 0
            elif i in claimed:
                assert called[i] == 0 and rows[i].outcome == "interrupted", rows[i]
            else:
                assert called[i] == 1 and rows[i].outcome == "delivered", rows[i]
