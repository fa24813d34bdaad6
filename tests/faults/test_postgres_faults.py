"""PostgreSQL in production mode: lookups with a registry, outages, a frozen server, failover.

The lookup tests run on whichever database the suite runs on. The fault tests start a private
PostgreSQL cluster (tests/faults/pg.py) so they may stop and freeze it; they run in the
PostgreSQL pass of the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opencaller.storage.database import Database
from opencaller.storage.db import migrate
from opencaller.storage.tables import accounts, ledger

from ..cluster import Cluster, cluster, flash_price, free_port, new_customer, wait_final
from ..live import LiveServer, start_server
from .pg import PrivatePostgres, pg_bin, private_postgres

DATA = Path(__file__).resolve().parents[1] / "data" / "numbering"
SRC = str(Path(__file__).resolve().parents[2] / "src")

pytestmark = pytest.mark.slow

PG_PASS = os.environ.get("OPENCALLER_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("OPENCALLER_TEST_REDIS_URL", "")
needs_private_pg = pytest.mark.skipif(
    not PG_PASS or pg_bin() is None,
    reason="PostgreSQL fault tests run in the PostgreSQL pass (OPENCALLER_TEST_DATABASE_URL)"
    " and need the server binaries under /usr/lib/postgresql (scripts/test installs them)",
)

# Short enough that a test sees them act; docs/configuration.md has the defaults.
TIMEOUTS = {
    "db_connect_timeout_s": 1.5,
    "db_statement_timeout_s": 2,
    "db_acquire_timeout_s": 2,
}


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        migrate(pg.url())
        yield pg


def opencaller(*args: str, env: dict[str, str]) -> str:
    full = {**os.environ, **env, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-m", "opencaller", *args], env=full, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def burst(server: LiveServer, method: str, n: int, **params: object) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=n)
    ) as client:
        answers = await asyncio.gather(
            *(client.get(f"/v1.0/{method}", params=server.params(**params)) for _ in range(n))
        )
    return [r.json() for r in answers]


@pytest.mark.parametrize("registry", [True, False], ids=["registry", "no-registry"])
def test_lookups_on_a_fresh_node(tmp_path: Path, db_url: str, registry: bool) -> None:
    """checkPhone and a burst of getInfo on a node that has just started, with and without an
    imported registry: every answer is a success (the SRE saw code 500 on PostgreSQL)."""
    env = {
        "OPENCALLER_DATABASE_URL": db_url,
        "OPENCALLER_SIMULATOR__DELAY_S": "0.05",
        "OPENCALLER_POLL_INTERVAL_S": "0.1",
    }
    first = start_server(tmp_path, env, name="first")
    try:
        body = httpx.get(f"{first.url}/v1.0/initCall", params=first.params(phone="79091000001"))
        uid = body.json()["ucaller_id"]
    finally:
        first.kill()
    if registry:
        out = opencaller("numbering", "import", str(DATA / "DEF-9xx.csv"), env=env)
        assert "imported" in out

    fresh = start_server(tmp_path, env, name="fresh")
    try:
        infos = asyncio.run(burst(fresh, "getInfo", 40, uid=uid))
        check = httpx.get(
            f"{fresh.url}/v1.0/checkPhone", params=fresh.params(phone="+79091100000")
        ).json()
    finally:
        fresh.kill()
    assert [i["status"] for i in infos] == [True] * 40, [i for i in infos if not i["status"]]
    operators = {i["phone_info"][0]["operator"] for i in infos}
    assert check["status"] is True, check
    if registry:
        assert operators == {'ПАО "Вымпел-Коммуникации"'}
        assert check["company"] == 'ПАО "Вымпел-Коммуникации"'
        assert check["city"] == "Пермь"
    else:
        assert operators == {"Билайн"}  # libphonenumber alone
        assert check["company"] == ""


async def sql_value(db_url: str, query: Any) -> int:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.close()


def init_calls(c: Cluster, params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with httpx.Client(timeout=30) as client:
        return [
            client.get(f"http://127.0.0.1:{c.ports[0]}/v1.0/initCall", params=p).json()
            for p in params
        ]


def wait_until(predicate: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@needs_private_pg
def test_outage_keeps_the_outcomes_of_calls_in_flight(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """PostgreSQL stops for 8 s while calls ring: requests fail fast with code 500, and every
    call placed ends with the outcome the network gave it (none ``interrupted``, although the
    outage outlasts the lease), with exactly the refunds those outcomes call for."""
    phones = [f"7916{n:07d}" for n in range(3000, 3016)]
    busy = set(phones[::4])
    with cluster(
        private_pg.url(),
        REDIS_URL,
        tmp_path,
        api_nodes=1,
        workers=2,
        lease_s=3,
        poll_interval_s=0.2,
        simulator__delay_s=2.5,
        simulator__outcomes=json.dumps(dict.fromkeys(busy, "busy")),
        **TIMEOUTS,
    ) as c:
        price = asyncio.run(flash_price(c.db_url))
        start_units = 100 * price
        sid, key, aid = asyncio.run(new_customer(c.db_url, balance_units=start_units))
        bodies = init_calls(c, [{"service_id": sid, "key": key, "phone": p} for p in phones])
        assert all(b["status"] is True for b in bodies), bodies
        ids = [int(b["ucaller_id"]) for b in bodies]
        wait_until(lambda: len(c.calls()) == len(ids), 20, "every call to be placed")

        private_pg.stop()  # the calls are ringing: they end during the outage
        try:
            down = httpx.get(
                f"http://127.0.0.1:{c.ports[0]}/v1.0/getInfo",
                params={"service_id": sid, "key": key, "uid": ids[0]},
                timeout=30,
            ).json()
            health = httpx.get(f"http://127.0.0.1:{c.ports[0]}/health", timeout=30).json()
            time.sleep(8)
        finally:
            private_pg.start()
        assert down["status"] is False and down["code"] == 500, down
        assert health["database"] is False

        rows = asyncio.run(wait_final(c.db_url, ids, within=60))
        with httpx.Client(timeout=30) as client:
            infos = {
                i: client.get(
                    f"http://127.0.0.1:{c.ports[0]}/v1.0/getInfo",
                    params={"service_id": sid, "key": key, "uid": i},
                ).json()
                for i in ids
            }
        balance = asyncio.run(
            sql_value(c.db_url, select(accounts.c.balance).where(accounts.c.id == aid))
        )
        ledger_sum = asyncio.run(
            sql_value(c.db_url, select(func.sum(ledger.c.amount)).where(ledger.c.account_id == aid))
        )
        refunds = asyncio.run(
            sql_value(
                c.db_url,
                select(func.count()).where(ledger.c.account_id == aid, ledger.c.kind == "refund"),
            )
        )
        worker_logs = "".join(p.read_text() for p in tmp_path.glob("worker*.log"))
        called = Counter(int(x["ucaller_id"]) for x in c.calls())

    assert called == Counter(ids), "every call placed once"
    decided = {i: ("busy" if p in busy else "delivered") for i, p in zip(ids, phones, strict=True)}
    assert {i: r.outcome for i, r in rows.items()} == decided, c.logs()
    assert {i: info["call_status"] for i, info in infos.items()} == {
        i: 0 if o == "busy" else 1 for i, o in decided.items()
    }
    assert "outcome not written yet" in worker_logs  # the outage did hit the outcome writes
    assert "never retrieved" not in worker_logs
    assert refunds == len(busy)
    assert balance == start_units - price * (len(ids) - len(busy))
    assert ledger_sum == balance


@needs_private_pg
def test_frozen_database_answers_within_the_timeout(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """SIGSTOP on PostgreSQL: requests and /health answer while it is still frozen (code 500,
    ``database: false``) instead of waiting for it; after SIGCONT everything works again."""
    with cluster(
        private_pg.url(),
        REDIS_URL,
        tmp_path,
        api_nodes=1,
        workers=1,
        poll_interval_s=0.2,
        simulator__delay_s=0.2,
        **TIMEOUTS,
    ) as c:
        sid, key, _ = asyncio.run(new_customer(c.db_url))
        base = f"http://127.0.0.1:{c.ports[0]}"
        auth = {"service_id": sid, "key": key}
        first = httpx.get(f"{base}/v1.0/initCall", params={**auth, "phone": "79161110000"}).json()
        assert first["status"] is True, first

        private_pg.freeze()
        try:
            info = httpx.get(
                f"{base}/v1.0/getInfo", params={**auth, "uid": first["ucaller_id"]}, timeout=30
            ).json()
            health = httpx.get(f"{base}/health", timeout=30).json()
            still_frozen = all(
                Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"
                for pid in private_pg.pids()
            )
        finally:
            private_pg.thaw()
        assert still_frozen, "the answers came only after the freeze ended"
        assert info["status"] is False and info["code"] == 500, info
        assert health["database"] is False

        def works() -> bool:
            body = httpx.get(f"{base}/v1.0/getInfo", params={**auth, "uid": first["ucaller_id"]})
            return bool(body.json()["status"])

        wait_until(works, 30, "getInfo to work again after SIGCONT")
        again = httpx.get(f"{base}/v1.0/initCall", params={**auth, "phone": "79161110001"}).json()
        assert again["status"] is True, again
        rows = asyncio.run(wait_final(c.db_url, [first["ucaller_id"], again["ucaller_id"]]))
        assert {r.outcome for r in rows.values()} == {"delivered"}, c.logs()
        assert httpx.get(f"{base}/health").json()["database"] is True
        api_log = (tmp_path / "api0.log").read_text()
    assert "database unavailable" in api_log  # one line per failed request, no traceback
    assert "Traceback" not in api_log


@needs_private_pg
def test_multi_host_url_skips_a_dead_host(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    """``postgresql://dead,live/db?target_session_attrs=read-write``: the API node, the worker
    and its LISTEN connection all reach the live host; calls are placed and answered."""
    dead = free_port()  # nothing listens there
    url = (
        f"postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{private_pg.port}/opencaller"
        "?target_session_attrs=read-write"
    )
    with cluster(url, REDIS_URL, tmp_path, api_nodes=1, workers=1, simulator__delay_s=0.1) as c:
        sid, key, _ = asyncio.run(new_customer(url))
        body = httpx.get(
            f"http://127.0.0.1:{c.ports[0]}/v1.0/initCall",
            params={"service_id": sid, "key": key, "phone": "79161234000"},
        ).json()
        assert body["status"] is True, body
        rows = asyncio.run(wait_final(url, [body["ucaller_id"]]))
        assert rows[body["ucaller_id"]].outcome == "delivered", c.logs()
        health = httpx.get(f"http://127.0.0.1:{c.ports[0]}/health").json()
        assert health["database"] is True
        worker_log = (tmp_path / "worker0.log").read_text()
        api_log = (tmp_path / "api0.log").read_text()
    assert "LISTEN connection failed" not in worker_log
    assert "NOTIFY failed" not in api_log


def log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


@needs_private_pg
def test_stopping_worker_flushes_outcomes_within_the_drain_time(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """A worker told to stop while PostgreSQL is down keeps its outcomes for the drain time:
    written when the database returns within it; past it, logged as lost and later finalised
    ``interrupted`` and refunded by another worker (as after a crash)."""
    phones = [f"7916{n:07d}" for n in range(4000, 4010)]
    busy = {phones[0], phones[3]}
    with cluster(
        private_pg.url(),
        REDIS_URL,
        tmp_path,
        api_nodes=1,
        workers=1,
        lease_s=3,
        drain_s=15,
        poll_interval_s=0.2,
        simulator__delay_s=1.5,
        simulator__outcomes=json.dumps(dict.fromkeys(busy, "busy")),
        **TIMEOUTS,
    ) as c:
        price = asyncio.run(flash_price(c.db_url))
        start_units = 100 * price
        sid, key, aid = asyncio.run(new_customer(c.db_url, balance_units=start_units))
        auth = {"service_id": sid, "key": key}

        def place(batch: list[str]) -> list[int]:
            bodies = init_calls(c, [{**auth, "phone": p} for p in batch])
            assert all(b["status"] is True for b in bodies), bodies
            ids = [int(b["ucaller_id"]) for b in bodies]
            wait_until(
                lambda: set(ids) <= {int(x["ucaller_id"]) for x in c.calls()},
                20,
                "the calls to be placed",
            )
            return ids

        # 1. The database returns during the drain: the real outcomes are written.
        flushed = place(phones[:6])
        private_pg.stop()
        try:
            time.sleep(2.5)  # the calls end; their outcomes wait
            c.workers[0].send_signal(signal.SIGTERM)
            time.sleep(3)
        finally:
            private_pg.start()
        assert c.workers[0].wait(timeout=60) == 0

        # 2. It stays down past the drain: the outcomes are logged as lost.
        c.env["OPENCALLER_DRAIN_S"] = "2"
        c.add_worker(1)
        lost = place(phones[6:])
        private_pg.stop()
        try:
            time.sleep(2.5)
            c.workers[1].send_signal(signal.SIGTERM)
            assert c.workers[1].wait(timeout=60) == 0
        finally:
            private_pg.start()
        c.add_worker(2)  # finalises what the stopped worker could not write
        rows = asyncio.run(wait_final(c.db_url, flushed + lost, within=60))
        balance = asyncio.run(
            sql_value(c.db_url, select(accounts.c.balance).where(accounts.c.id == aid))
        )
        ledger_sum = asyncio.run(
            sql_value(c.db_url, select(func.sum(ledger.c.amount)).where(ledger.c.account_id == aid))
        )

    decided = {
        i: ("busy" if p in busy else "delivered") for i, p in zip(flushed, phones, strict=False)
    }
    assert {i: rows[i].outcome for i in flushed} == decided, c.logs()
    assert {rows[i].outcome for i in lost} == {"interrupted"}, c.logs()
    reported_lost = {
        r.get("ucaller_id")
        for r in log_records(tmp_path / "worker1.log")
        if r["msg"].startswith("outcome lost")
    }
    assert reported_lost == set(lost)
    # Charged: the delivered calls of part 1; refunded: busy and interrupted calls.
    assert balance == start_units - price * (len(flushed) - len(busy))
    assert ledger_sum == balance
