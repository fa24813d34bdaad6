"""Production parts in one process: Redis counters shared by nodes, cross-process wake-up,
metrics and JSON logs."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import orjson
import pytest

from opencaller.config import Settings
from opencaller.dispatch.wakeup import Listener, Notifier
from opencaller.domain.clock import FakeClock
from opencaller.domain.throttle import MemoryCounters
from opencaller.observability.logs import JsonFormatter
from opencaller.runtime import Runtime
from opencaller.storage.redis_counters import RedisCounters

from .support import Api, make_api

REDIS_URL = os.environ.get("OPENCALLER_TEST_REDIS_URL", "")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="needs Redis: set OPENCALLER_TEST_REDIS_URL (scripts/test's PG run)"
)
needs_pg = pytest.mark.skipif(
    not os.environ.get("OPENCALLER_TEST_DATABASE_URL"),
    reason="needs PostgreSQL: set OPENCALLER_TEST_DATABASE_URL (scripts/test's PG run)",
)
NOW = 1_767_225_600.0


@pytest.fixture
async def nodes(redis_prefix: str) -> AsyncIterator[tuple[RedisCounters, RedisCounters]]:
    """Two independent Redis clients standing in for two API nodes."""
    one = RedisCounters(REDIS_URL, prefix=redis_prefix, fail_limit=5, block_s=900)
    two = RedisCounters(REDIS_URL, prefix=redis_prefix, fail_limit=5, block_s=900)
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


@needs_redis
async def test_rate_limit_is_exact_across_nodes(nodes: tuple[RedisCounters, RedisCounters]) -> None:
    one, two = nodes
    results = await asyncio.gather(
        *((one if i % 2 else two).hit_rate("svc:1", 7, NOW + 0.5 + i / 1000) for i in range(60))
    )
    assert sum(r is None for r in results) == 7
    assert all(r == 1 for r in results if r is not None)
    # The next second starts from zero; other keys are independent.
    assert await one.hit_rate("svc:1", 7, NOW + 1.0) is None
    assert await two.hit_rate("svc:2", 1, NOW + 0.5) is None


@needs_redis
async def test_auth_failures_block_across_nodes(nodes: tuple[RedisCounters, RedisCounters]) -> None:
    one, two = nodes
    ip = "198.51.100.9"
    await asyncio.gather(*(one.auth_failed(ip, NOW) for _ in range(2)))
    await asyncio.gather(*(two.auth_failed(ip, NOW) for _ in range(2)))
    assert await one.blocked_for(ip, NOW) is None  # 4 of 5
    await two.auth_failed(ip, NOW + 1)
    assert await one.blocked_for(ip, NOW + 1) == 900
    assert await two.blocked_for(ip, NOW + 1 + 899.5) == 1
    assert await two.blocked_for(ip, NOW + 1 + 900) is None
    assert await one.blocked_for("198.51.100.10", NOW) is None


@needs_redis
async def test_auth_failures_outside_the_window_do_not_count(
    nodes: tuple[RedisCounters, RedisCounters],
) -> None:
    one, _ = nodes
    ip = "198.51.100.11"
    for i in range(4):
        await one.auth_failed(ip, NOW + i)
    await one.auth_failed(ip, NOW + 301)  # the first ones left the 300 s window
    assert await one.blocked_for(ip, NOW + 301) is None


async def test_memory_and_redis_counters_agree_on_the_protocol() -> None:
    # The protocol is what the authenticator relies on; both implementations must fit it.
    mem = MemoryCounters(fail_limit=1)
    await mem.auth_failed("203.0.113.1", NOW)
    assert await mem.blocked_for("203.0.113.1", NOW) == 900


@needs_redis
async def test_api_uses_redis_counters(api: Api) -> None:
    assert isinstance(api.rt.redis, RedisCounters)
    for _ in range(20):
        r = await api.client.get(
            "/v1.0/getBalance", params={"service_id": api.service_id, "key": "x" * 32}
        )
        assert r.json()["code"] == 401
    r = await api.client.get("/v1.0/getBalance", params=api.creds)
    assert r.json()["code"] == 0  # blocked IP (uCaller code 0), even with the right key
    keys = await api.rt.redis.redis.keys(f"{api.rt.settings.redis_prefix}blocked:*")
    assert len(keys) == 1


@needs_pg
async def test_notify_after_commit_wakes_a_listener(db_url: str) -> None:
    woken = asyncio.Event()
    listener = Listener(db_url, woken.set)
    notifier = Notifier(db_url)
    await listener.start()
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        woken.clear()  # the listener wakes once on connect
        notifier.poke()
        notifier.poke()  # coalesced with the first
        await asyncio.wait_for(woken.wait(), 10)
    finally:
        await notifier.close()
        await listener.close()


async def test_metrics_count_requests_calls_and_queue(api: Api) -> None:
    body = await api.get("initCall", phone="79000000001")
    await api.wait_final(body["ucaller_id"])
    await api.get("getInfo", uid=10**9)
    text = (await api.client.get("/metrics")).text
    assert 'opencaller_requests_total{code="ok",method="initcall"}' in text
    assert 'opencaller_requests_total{code="' in text and 'method="getinfo"}' in text
    assert "opencaller_request_seconds_bucket" in text
    assert 'opencaller_calls_total{outcome="delivered"}' in text
    assert "opencaller_dispatch_delay_seconds_count" in text
    assert 'opencaller_queue_depth{state="queued"} 0.0' in text


async def test_health_checks_the_database_and_livez_does_not(api: Api) -> None:
    r = await api.client.get("/v1.0/health")
    assert r.json() == {"status": True, "database": True, "providers": True}
    live = await api.client.get("/livez")
    assert live.status_code == 200 and live.text == "ok"


async def test_health_reports_an_unreachable_database() -> None:
    dead = Settings(database_url="postgresql://postgres@127.0.0.1:9/none", demo=False)
    rt = Runtime(dead, dispatch=False)
    try:
        assert await rt.healthy() == (False, True)
    finally:
        await rt.db.close()


def test_json_logs_carry_the_ucaller_id() -> None:
    record = logging.LogRecord(
        "opencaller.dispatch", logging.INFO, __file__, 1, "call %s", ("x",), None
    )
    record.ucaller_id = 42
    out = orjson.loads(JsonFormatter().format(record))
    assert out["msg"] == "call x" and out["ucaller_id"] == 42 and out["level"] == "info"


@needs_redis
async def test_admits_sent_together_get_their_own_answers_even_after_redis_forgets_scripts(
    nodes: tuple[RedisCounters, RedisCounters],
) -> None:
    """Scripts called at once go to Redis in one pipeline; a Redis that lost its scripts
    (a restart, SCRIPT FLUSH) gets them again without failing anyone's request."""
    one, two = nodes
    await one.redis.script_flush()
    results = await asyncio.gather(
        *((one if i % 2 else two).admit("10.0.0.9", "svc:9", 11, NOW + 0.25) for i in range(40))
    )
    assert [blocked for blocked, _ in results] == [None] * 40
    assert sum(wait is None for _, wait in results) == 11
    await one.redis.script_flush()
    assert await one.admit("10.0.0.9", "svc:9", 11, NOW + 1.25) == (None, None)


@needs_redis
async def test_number_limits_in_redis_hold_across_nodes(redis_prefix: str) -> None:
    """Two nodes reserving for one number at the same instant: one gets it, the others are
    told to wait the 15 s gap; the service's hourly limit counts across nodes too."""
    from opencaller.domain import limits
    from opencaller.runtime import limit_windows
    from opencaller.storage.redis_limits import RedisLimits

    windows = limit_windows()
    one_c = RedisCounters(REDIS_URL, prefix=redis_prefix)
    two_c = RedisCounters(REDIS_URL, prefix=redis_prefix)
    one = RedisLimits(one_c.batcher, prefix=redis_prefix, windows=windows)
    two = RedisLimits(two_c.batcher, prefix=redis_prefix, windows=windows)
    try:
        verdicts = await asyncio.gather(
            *(
                (one if i % 2 else two).reserve(
                    f"t{i}", phone="79161234567", service_id=5, hourly=0, unique=None, now=NOW
                )
                for i in range(20)
            )
        )
        assert sorted(v for v, _ in verdicts) == ["gap"] * 19 + ["ok"]
        # A released reservation frees the number at once.
        winner = next(i for i, (v, _) in enumerate(verdicts) if v == "ok")
        await (one if winner % 2 else two).release(
            f"t{winner}", phone="79161234567", service_id=5, unique=None
        )
        again = await one.reserve(
            "t99", phone="79161234567", service_id=5, hourly=0, unique=None, now=NOW + 1
        )
        assert again == ("ok", None)
        hourly = await asyncio.gather(
            *(
                (one if i % 2 else two).reserve(
                    f"h{i}", phone=f"7916000{i:04d}", service_id=6, hourly=3, unique=None, now=NOW
                )
                for i in range(10)
            )
        )
        assert sorted(v for v, _ in hourly) == ["hour"] * 7 + ["ok"] * 3
        refused = limits.refusal(*next(h for h in hourly if h[0] == "hour"), now=NOW + 100)
        assert refused is not None and refused.code == 50 and refused.retry_after == 3500
    finally:
        await one_c.close()
        await two_c.close()


async def test_outcomes_written_together_leave_other_dispatchers_rows_alone(
    settings: Settings, clock: FakeClock
) -> None:
    """Outcomes written together (one statement on PostgreSQL, one transaction on SQLite): a
    row whose lease another dispatcher holds now is not overwritten, and only its own caller
    hears so."""
    from sqlalchemy import select, update

    from opencaller.domain.call_outcomes import CallOutcomes, Ending, Hold
    from opencaller.storage.tables import authorizations as t

    async with make_api(settings, clock, dispatch=False) as api:
        ids = [
            (await api.get("initCall", phone=phone))["ucaller_id"]
            for phone in ("79000000001", "79000000002")
        ]
        async with api.rt.db.write() as conn:
            for uid, owner in zip(ids, ("me", "other"), strict=True):
                await conn.execute(
                    update(t)
                    .where(t.c.id == uid)
                    .values(dispatch_state="dialing", lease_owner=owner, lease_until=NOW + 30)
                )
        outcomes = CallOutcomes(api.rt.db)

        def outcome(uid: int) -> Ending:
            return Ending(
                auth_id=uid,
                outcome="delivered",
                reached=True,
                finished_at=NOW,
                caller_id="79001234567",
                sip_code=180,
                cost=30,
            )

        finished = (outcomes.finish(outcome(u), Hold.leased_by("me")) for u in ids)
        assert await asyncio.gather(*finished) == [True, False]
        async with api.rt.db.read() as conn:
            rows = {
                r.id: r
                for r in await conn.execute(
                    select(t.c.id, t.c.dispatch_state, t.c.call_status).where(t.c.id.in_(ids))
                )
            }
        assert (rows[ids[0]].dispatch_state, rows[ids[0]].call_status) == ("done", 1)
        assert (rows[ids[1]].dispatch_state, rows[ids[1]].call_status) == ("dialing", -1)
