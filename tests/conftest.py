"""Shared fixtures: a real database per test (SQLite file, or PostgreSQL when
OPENCALLER_TEST_DATABASE_URL points at one), the app in-process, and live servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from opencaller.config import FraudSettings, Settings, SimulatorSettings
from opencaller.domain.clock import FakeClock

from .support import Api, make_api, pg_database, reset_database

PG_URL = os.environ.get("OPENCALLER_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("OPENCALLER_TEST_REDIS_URL", "")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    """A private PostgreSQL database for this test session (dropped at the end)."""
    if not PG_URL:
        yield None
        return
    with pg_database(PG_URL) as url:
        yield url


@pytest.fixture
def db_url(tmp_path: object, pg_url: str | None) -> Iterator[str]:
    if pg_url:
        reset_database(pg_url)
        yield pg_url
    else:
        yield f"sqlite:///{tmp_path}/opencaller.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_prefix() -> str:
    """Redis keys of one test, so parallel runs and earlier tests never collide."""
    return f"oc-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def settings(db_url: str, redis_prefix: str) -> Settings:
    # With OPENCALLER_TEST_REDIS_URL set (the PostgreSQL run) the counters live in Redis.
    return Settings(
        database_url=db_url,
        redis_url=REDIS_URL or None,
        redis_prefix=redis_prefix,
        demo=False,
        auth_cache_s=0,
        poll_interval_s=0.05,
        simulator=SimulatorSettings(delay_s=0.05),
        # The rules' bursts dial runs of consecutive numbers that nobody verifies: what the
        # fraud guard exists to refuse. It is on in tests/test_fraud.py (and in the servers
        # the suite starts as processes); here the rules are tested on their own.
        fraud=FraudSettings(enabled=False),
    )


@pytest.fixture
async def api(settings: Settings, clock: FakeClock) -> AsyncIterator[Api]:
    async with make_api(settings, clock) as a:
        yield a
