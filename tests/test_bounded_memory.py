"""In-process maps keyed by client input stay at a fixed size under a flood of distinct keys,
and still protect against the newest offenders (the oldest may be forgotten)."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from opencaller import phone_text
from opencaller.app import create_app
from opencaller.config import Settings
from opencaller.domain import countries, throttle
from opencaller.domain.authentication import Authenticator
from opencaller.domain.clock import FakeClock
from opencaller.domain.throttle import MemoryCounters
from opencaller.errors import Code, UcallerError
from opencaller.numbering import lookup
from opencaller.runtime import Runtime
from opencaller.storage.database import Database

from .support import Api, add_customer, make_api

NOW = 1_800_000_000.0


def ip(n: int) -> str:
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


async def test_300k_failing_ips_keep_the_failure_map_at_its_cap() -> None:
    mem = MemoryCounters()
    tracemalloc.start()
    try:
        for n in range(300_000):
            await mem.auth_failed(ip(n), NOW + n / 1000)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(mem._fails) == throttle.MAX_FAILING_IPS
    # A full map of failure histories: about 20 MB, not hundreds.
    assert held < 30_000_000, held
    # The newest addresses are still counted: enough further failures block them...
    newest = ip(299_999)
    for i in range(mem.fail_limit - 1):
        await mem.auth_failed(newest, NOW + 300 + i / 1000)
    assert await mem.blocked_for(newest, NOW + 301) == 900
    # ...while the oldest were forgotten and start again from zero.
    oldest = ip(0)
    for i in range(mem.fail_limit - 1):
        await mem.auth_failed(oldest, NOW + 300 + i / 1000)
    assert await mem.blocked_for(oldest, NOW + 301) is None


async def test_300k_blocked_ips_keep_the_newest_blocked() -> None:
    mem = MemoryCounters(fail_limit=1)
    for n in range(300_000):
        await mem.auth_failed(ip(n), NOW)
    assert len(mem._blocked) == throttle.MAX_BLOCKED_IPS
    assert len(mem._fails) == 0
    assert await mem.blocked_for(ip(299_999), NOW + 1) == 899
    assert await mem.blocked_for(ip(300_000 - throttle.MAX_BLOCKED_IPS), NOW + 1) == 899
    assert await mem.blocked_for(ip(0), NOW + 1) is None  # the oldest block was forgotten


async def test_per_second_counts_of_many_keys_stay_bounded() -> None:
    mem = MemoryCounters(max_rate_keys=1000)
    for n in range(50_000):
        assert await mem.hit_rate(f"svc:{n}", 1, NOW) is None
    assert len(mem._rate) == 1000
    assert await mem.hit_rate("svc:49999", 1, NOW) == 1  # still counted: over the limit


@pytest.fixture
async def flooded(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """The API behind a trusted proxy, with in-memory counters small enough to overflow."""
    settings = settings.model_copy(update={"trusted_proxies": ["203.0.113.7/32"]})
    async with make_api(settings, clock):  # migrates the test database
        pass
    counters = MemoryCounters(fail_limit=1, max_failing=50, max_blocked=50)
    rt = Runtime(settings, clock=clock, dispatch=False, counters=counters)
    transport = httpx.ASGITransport(app=create_app(rt), client=("203.0.113.7", 40000))
    await rt.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://oc.test") as c:
            yield c, rt
    finally:
        await rt.stop()


async def test_a_flood_of_addresses_failing_auth_blocks_the_newest(
    flooded: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, rt = flooded
    sid, key, _ = await add_customer(rt)

    async def get_balance(addr: str, secret: str) -> int:
        r = await client.get(
            "/v1.0/getBalance",
            params={"service_id": sid, "key": secret},
            headers={"X-Forwarded-For": addr},
        )
        return int(r.json()["code"]) if r.json()["status"] is False else -1

    for n in range(500):
        assert await get_balance(ip(n), "x" * 32) == Code.AUTH_FAILED
    assert len(rt.counters._blocked) == 50  # type: ignore[attr-defined]
    assert await get_balance(ip(499), key) == Code.IP_BLOCKED  # newest: still blocked
    assert await get_balance(ip(0), key) == -1  # oldest: forgotten, the right key works


async def test_unknown_method_names_do_not_grow_metric_labels(
    flooded: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, _rt = flooded
    for n in range(300):
        r = await client.get(f"/v1.0/method{n}")
        assert r.json()["code"] == Code.METHOD_NOT_SUPPORTED
    text = (await client.get("/metrics")).text
    assert 'method="unknown"' in text
    assert "method0" not in text and "method299" not in text


async def test_service_cache_holds_at_most_its_cap(db_url: str, settings: Settings) -> None:
    async with make_api(settings, FakeClock()):
        pass
    db = Database(db_url)
    try:
        auth = Authenticator(db, MemoryCounters(), cache_s=60, max_cached=3)
        services = [await add_customer(db) for _ in range(5)]
        for sid, key, _ in services:
            caller = await auth.authenticate(key, sid, "198.51.100.1", NOW)
            assert caller.service.id == sid
        assert len(auth._cache) == 3
        with pytest.raises(UcallerError):
            await auth.authenticate("y" * 32, services[0][0], "198.51.100.1", NOW)
    finally:
        await db.close()


async def test_phone_lookups_of_many_new_numbers_keep_the_cache_at_its_size(
    api: Api,
) -> None:
    directory = api.rt.directory
    assert directory._cache.size == lookup.CACHE_SIZE
    directory._cache.size = 200  # the same LRU, made small enough to overflow quickly
    for n in range(1000):
        info = await directory.lookup_e164(f"7916{n:07d}")
        assert info.country_iso == "RU"
    assert directory.cache_stats().size == 200
    assert phone_text.known_number.cache_info().maxsize == 8_192


async def test_country_cache_is_bounded() -> None:
    phone_text.known_number.cache_clear()
    for n in range(20_000):
        countries.country_of(f"7926{n:07d}")
    info = phone_text.known_number.cache_info()
    assert info.currsize == info.maxsize == 8_192
