"""Engines for the numbering tests: a migrated SQLite file and a migrated PostgreSQL database.

PostgreSQL: one database per test session, created next to the one in
``OPENCALLER_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test) and
dropped at the end; the numbering tables are emptied before every test.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from opencaller.storage.db import async_url, create_engine, migrate
from opencaller.storage.numbering_tables import numbering_imports, numbering_ranges, ported_numbers

DATA = Path(__file__).parent.parent / "data" / "numbering"
PG_URL = os.environ.get("OPENCALLER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def data() -> Path:
    return DATA


async def _admin(sql: str) -> None:
    engine = create_async_engine(async_url(PG_URL), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"opencaller_numbering_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as exc:  # no server: say so instead of failing every test
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'numbering.db'}"
        migrate(url)
        return url
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=2)
    async with eng.begin() as conn:
        for table in (numbering_ranges, ported_numbers, numbering_imports):
            await conn.execute(delete(table))
    yield eng
    await eng.dispose()
