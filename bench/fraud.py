"""The fraud guard against a pumping attack: ``python -m bench.fraud``.

2,000 initCalls to consecutive numbers in two prefixes (both runs at once, each in order)
from 100 addresses behind a trusted proxy, no code ever entered, mixed at random with 500
legitimate requests to scattered numbers whose codes are entered at once (verifyCode). The
app runs in this process (httpx's ASGI transport: no sockets) with its default fraud settings
on SQLite, or on PostgreSQL + Redis with ``--database-url``/``--redis-url`` (a fresh
database is created next to the URL's and dropped afterwards).

Prints how many attack requests became calls (and charges) and how many legitimate ones were
refused — the targets are at most 5 % and 1 % — the reasons given, and the mean time of an
initCall with and without the guard (``--cost``: the same scattered traffic on a fresh
service, guard on then off; timings are noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from sqlalchemy.engine import make_url

from opencaller.app import create_app
from opencaller.config import FraudSettings, Settings, SimulatorSettings
from opencaller.domain import billing
from opencaller.domain.accounts import create_account, create_service
from opencaller.domain.bootstrap import ensure_tariff
from opencaller.domain.settings import ServiceSettings
from opencaller.runtime import Runtime
from opencaller.storage.db import migrate

PROXY = "127.0.0.1"  # the in-process client's address: the trusted proxy
CODES = ("903", "905", "906", "909", "910", "915", "917", "920", "925", "929", "950", "960")
T = TypeVar("T")


@dataclass
class Tally:
    placed: int = 0
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    other: Counter[int] = field(default_factory=Counter)


def interleave(rng: random.Random, a: list[T], b: list[T]) -> list[T]:
    """``a`` and ``b`` merged at random, each keeping its order."""
    picks = [0] * len(a) + [1] * len(b)
    rng.shuffle(picks)
    streams = (iter(a), iter(b))
    return [next(streams[p]) for p in picks]


def plan(attack: int, legit: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    half = attack // 2
    one = [("attack", f"7916123{i:04d}", f"198.51.100.{i % 100}") for i in range(half)]
    two = [("attack", f"7926777{i:04d}", f"198.51.100.{(i + 50) % 100}") for i in range(half)]
    ok = [
        ("legit", f"7{rng.choice(CODES)}{rng.randrange(10**7):07d}", f"192.0.2.{i % 250}")
        for i in range(legit)
    ]
    return interleave(rng, interleave(rng, one, two), ok)


@contextlib.contextmanager
def fresh_database(url: str | None) -> Iterator[str]:
    if url is None:
        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{tmp}/bench.db"
            migrate(db)
            yield db
        return
    import asyncpg

    name = f"oc_bench_{uuid.uuid4().hex[:10]}"
    u = make_url(url)
    dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    db = u.set(database=name).render_as_string(hide_password=False)
    try:
        migrate(db)
        yield db
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def customer(rt: Runtime) -> dict[str, Any]:
    now = rt.clock.now()
    tariff_id = await ensure_tariff(rt.db, now)
    async with rt.db.write() as conn:
        aid = await create_account(
            conn, email=f"{uuid.uuid4().hex[:8]}@bench.local", now=now, tariff_id=tariff_id
        )
        await billing.credit(conn, aid, 10**9, kind="topup", now=now)
        sid, key = await create_service(
            conn, account_id=aid, name="bench", now=now, settings=ServiceSettings(rps_limit=10**6)
        )
    return {"service_id": sid, "key": key}


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    rt = Runtime(settings, dispatch=False)
    app = create_app(rt)
    await rt.start()
    try:
        transport = httpx.ASGITransport(app=app, client=(PROXY, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield rt, client
    finally:
        await rt.stop()


async def balance(client: httpx.AsyncClient, creds: dict[str, Any]) -> float:
    r = await client.get("/v1.0/getBalance", params=creds)
    return float(r.json()["rub_balance"])


async def attack_run(
    client: httpx.AsyncClient, creds: dict[str, Any], steps: list[tuple[str, str, str]]
) -> dict[str, Tally]:
    tallies = {"attack": Tally(), "legit": Tally()}
    for who, phone, ip in steps:
        r = await client.get(
            "/v1.0/initCall",
            params={**creds, "phone": phone},
            headers={"X-Forwarded-For": ip},
        )
        body = r.json()
        tally = tallies[who]
        if body["status"]:
            tally.placed += 1
            if who == "legit":
                params = {**creds, "uid": body["ucaller_id"], "code": body["code"]}
                await client.get("/v1.0/verifyCode", params=params)
        elif body["code"] == 64:
            tally.refused += 1
            tally.reasons[reason_kind(body["error"])] += 1
        else:
            tally.other[body["code"]] += 1
    return tallies


def reason_kind(error: str) -> str:
    for words, kind in (
        ("hundred numbers", "run (hundred numbers)"),
        ("numbers starting", "prefix"),
        ("client address", "address"),
        ("operator", "operator"),
        ("high-risk", "high-risk range"),
    ):
        if words in error:
            return kind
    return "other"


async def per_call_ms(settings: Settings, n: int, seed: int) -> float:
    rng = random.Random(seed)
    async with running(settings) as (rt, client):
        creds = await customer(rt)
        phones = [f"7{rng.choice(CODES)}{rng.randrange(10**7):07d}" for _ in range(n)]
        started = time.perf_counter()
        for i, phone in enumerate(phones):
            headers = {"X-Forwarded-For": f"192.0.2.{i % 250}"}
            await client.get("/v1.0/initCall", params={**creds, "phone": phone}, headers=headers)
        return 1000 * (time.perf_counter() - started) / n


async def run(args: argparse.Namespace, db_url: str) -> None:
    settings = Settings(
        database_url=db_url,
        redis_url=args.redis_url,
        redis_prefix=f"oc-bench:{uuid.uuid4().hex[:8]}:",
        demo=False,
        trusted_proxies=[f"{PROXY}/32"],
        simulator=SimulatorSettings(delay_s=0.01),
    )
    async with running(settings) as (rt, client):
        creds = await customer(rt)
        start = await balance(client, creds)
        steps = plan(args.attack, args.legit, args.seed)
        t0 = time.perf_counter()
        tallies = await attack_run(client, creds, steps)
        elapsed = time.perf_counter() - t0
        charged = start - await balance(client, creds)
    report(args, tallies, charged, elapsed)
    if args.cost:
        on = await per_call_ms(settings, args.cost, args.seed)
        off_settings = settings.model_copy(update={"fraud": FraudSettings(enabled=False)})
        off = await per_call_ms(off_settings, args.cost, args.seed + 1)
        print(f"initCall, scattered numbers: {on:.2f} ms with the guard, {off:.2f} ms without")


def report(args: argparse.Namespace, tallies: dict[str, Tally], charged: float, s: float) -> None:
    attack, legit = tallies["attack"], tallies["legit"]
    engine = "PostgreSQL + Redis" if args.redis_url else "SQLite"
    print(f"{engine}: {args.attack} attack + {args.legit} legitimate requests in {s:.1f} s")
    print(
        f"attack: {attack.placed} became calls ({100 * attack.placed / args.attack:.2f} %),"
        f" {attack.refused} refused with 64, other answers {dict(attack.other)}"
    )
    print(f"  reasons: {dict(attack.reasons)}")
    print(
        f"legitimate: {legit.refused} refused ({100 * legit.refused / args.legit:.2f} %),"
        f" {legit.placed} placed, other answers {dict(legit.other)}"
    )
    print(f"charged: {charged:.2f} RUB for {attack.placed + legit.placed} calls")
    ok = attack.placed <= 0.05 * args.attack and legit.refused <= 0.01 * args.legit
    print("targets (attack <= 5 %, legitimate refused <= 1 %):", "met" if ok else "MISSED")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attack", type=int, default=2000)
    p.add_argument("--legit", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database-url", default=None, help="PostgreSQL server (default: SQLite)")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--cost", type=int, default=0, help="initCalls to time, guard on and off")
    return p.parse_args()


def main() -> None:
    args = parse()
    with fresh_database(args.database_url) as db_url:  # migrations run their own loop
        asyncio.run(run(args, db_url))


if __name__ == "__main__":
    main()
