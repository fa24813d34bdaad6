"""Test helpers: an API client bound to a fresh account and service, and database setup."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from opencaller.app import create_app
from opencaller.config import Settings
from opencaller.domain import billing
from opencaller.domain.accounts import create_account, create_service
from opencaller.domain.bootstrap import ensure_tariff
from opencaller.domain.clock import Clock
from opencaller.domain.money import to_units
from opencaller.domain.settings import ServiceSettings
from opencaller.runtime import Runtime
from opencaller.storage.database import Database
from opencaller.storage.db import migrate


@contextlib.contextmanager
def pg_database(base_url: str) -> Iterator[str]:
    """Create a uniquely named database next to ``base_url``'s and drop it afterwards."""
    import asyncpg

    name = f"oc_test_{uuid.uuid4().hex[:10]}"
    u = make_url(base_url)
    dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = u.set(database=name).render_as_string(hide_password=False)
    migrate(url)
    try:
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def reset_database(url: str) -> None:
    """Empty every table (fast, keeps the migrated schema)."""

    async def run() -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        from opencaller.storage.db import async_url
        from opencaller.storage.tables import metadata

        engine = create_async_engine(async_url(url))
        async with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        await engine.dispose()

    asyncio.run(run())


@dataclass
class Api:
    rt: Runtime
    client: httpx.AsyncClient
    service_id: int
    key: str
    account_id: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def creds(self) -> dict[str, Any]:
        return {"service_id": self.service_id, "key": self.key}

    async def get(self, method: str, **params: Any) -> dict[str, Any]:
        r = await self.client.get(f"/v1.0/{method}", params={**self.creds, **params})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def post_json(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(
            f"/v1.0/{method}",
            json=body,
            headers={"Authorization": f"Bearer {self.key}.{self.service_id}"},
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    async def new_service(
        self, balance_rub: float = 100.0, email: str | None = None
    ) -> tuple[int, str, int]:
        return await add_customer(self.rt, balance_rub, email)

    async def wait_final(self, uid: int, within_s: float = 10.0) -> dict[str, Any]:
        """getInfo once the call has an outcome (or as it is after ``within_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            info = await self.get("getInfo", uid=uid)
            if info.get("call_status", -1) != -1 or loop.time() > deadline:
                return info
            await asyncio.sleep(0.1)  # stays well under the per-second limit


async def add_customer(
    rt: Runtime | Database,
    balance_rub: float = 100.0,
    email: str | None = None,
    settings: ServiceSettings | None = None,
) -> tuple[int, str, int]:
    """A new account with a balance and one service: (service_id, key, account_id)."""
    db = rt.db if isinstance(rt, Runtime) else rt
    now = Clock().now()
    tariff_id = await ensure_tariff(db, now)
    async with db.write() as conn:
        aid = await create_account(
            conn,
            email=email or f"{uuid.uuid4().hex[:8]}@example.com",
            now=now,
            tariff_id=tariff_id,
        )
        if balance_rub:
            await billing.credit(conn, aid, to_units(balance_rub), kind="topup", now=now)
        sid, key = await create_service(
            conn,
            account_id=aid,
            name="Test service",
            now=now,
            use_direction="tests",
            # Fixture services are open like those created before the fraud guard
            # (docs/antifraud.md): the suite calls many countries.
            settings=settings or ServiceSettings(),
        )
    return sid, key, aid


@contextlib.asynccontextmanager
async def make_api(
    settings: Settings, clock: Clock, *, balance_rub: float = 100.0, dispatch: bool = True
) -> AsyncIterator[Api]:
    if settings.database_url.startswith("sqlite"):
        await asyncio.to_thread(migrate, settings.database_url)
    rt = Runtime(settings, clock=clock, dispatch=dispatch)
    app = create_app(rt)
    await rt.start()
    try:
        sid, key, aid = await add_customer(rt, balance_rub)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://opencaller.test") as c:
            yield Api(rt, c, sid, key, aid)
    finally:
        await rt.stop()
