"""Real processes for multi-node tests: `opencaller serve --no-dispatch` API nodes and
`opencaller worker` processes on one PostgreSQL database and one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from opencaller.domain import billing
from opencaller.domain.accounts import create_account, create_service
from opencaller.domain.bootstrap import ensure_tariff
from opencaller.domain.clock import Clock
from opencaller.domain.settings import ServiceSettings
from opencaller.storage.database import Database
from opencaller.storage.tables import authorizations

SRC = str(Path(__file__).resolve().parents[1] / "src")
a = authorizations.c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    db_url: str
    redis_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    api: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def sim_log(self) -> Path:
        return self.workdir / "calls.jsonl"

    def _spawn(self, name: str, args: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env, **extra}
        env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
        out = (self.workdir / f"{name}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "opencaller", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def start(self, *, api_nodes: int, workers: int, **settings: Any) -> None:
        self.env = {
            "OPENCALLER_DATABASE_URL": self.db_url,
            "OPENCALLER_REDIS_URL": self.redis_url,
            "OPENCALLER_REDIS_PREFIX": f"oc-cluster:{uuid.uuid4().hex[:10]}:",
            "OPENCALLER_DEMO": "false",
            "OPENCALLER_SIMULATOR__LOG_PATH": str(self.sim_log),
            "OPENCALLER_LOG_JSON": "true",
            **{f"OPENCALLER_{k.upper()}": str(v) for k, v in settings.items()},
        }
        for i in range(api_nodes):
            port = free_port()
            self.ports.append(port)
            self.api.append(
                self._spawn(f"api{i}", ["serve", "--no-dispatch", "--port", str(port)], {})
            )
        for i in range(workers):
            self.add_worker(i)
        self.wait_ready()

    def add_worker(self, i: int) -> subprocess.Popen[bytes]:
        p = self._spawn(f"worker{i}", ["worker"], {})
        self.workers.append(p)
        return p

    def wait_ready(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"API node on {port} did not start: {self.logs()}")
                time.sleep(0.1)

    def check_alive(self) -> None:
        for p in self.api + self.workers:
            if p.poll() is not None and p.returncode not in (-signal.SIGKILL,):
                raise RuntimeError(f"process {p.pid} exited {p.returncode}: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
            for f in sorted(self.workdir.glob("*.log"))
        )

    def stop(self) -> None:
        procs = self.api + self.workers
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def calls(self) -> list[dict[str, Any]]:
        if not self.sim_log.exists():
            return []
        return [orjson.loads(line) for line in self.sim_log.read_bytes().splitlines() if line]


@contextlib.contextmanager
def cluster(
    db_url: str, redis_url: str, workdir: Path, *, api_nodes: int, workers: int, **settings: Any
) -> Iterator[Cluster]:
    c = Cluster(db_url, redis_url, workdir)
    try:
        c.start(api_nodes=api_nodes, workers=workers, **settings)
        yield c
    finally:
        c.stop()


async def new_customer(
    db_url: str, *, balance_units: int | None = None, **service_settings: Any
) -> tuple[int, str, int]:
    """An account (with ``balance_units``, or plenty) and a service; returns (sid, key, aid)."""
    db = Database(db_url)
    try:
        now = Clock().now()
        tariff_id = await ensure_tariff(db, now)
        async with db.write() as conn:
            aid = await create_account(
                conn, email=f"{uuid.uuid4().hex[:10]}@example.com", now=now, tariff_id=tariff_id
            )
            amount = balance_units if balance_units is not None else 10**9
            if amount:
                await billing.credit(conn, aid, amount, kind="topup", now=now)
            sid, key = await create_service(
                conn,
                account_id=aid,
                name="cluster",
                now=now,
                settings=ServiceSettings(rps_limit=100_000, **service_settings),
            )
        return sid, key, aid
    finally:
        await db.close()


async def flash_price(db_url: str) -> int:
    db = Database(db_url)
    try:
        tariff_id = await ensure_tariff(db, Clock().now())
        async with db.read() as conn:
            return await billing.price_of(conn, tariff_id, "flash", "RU")
    finally:
        await db.close()


async def wait_final(db_url: str, ids: list[int], within: float = 40.0) -> dict[int, Any]:
    """Rows of ``ids`` once every one has a final call_status (or whatever they are at timeout)."""
    db = Database(db_url)
    try:
        deadline = time.monotonic() + within
        while True:
            async with db.read() as conn:
                rows = {
                    int(r.id): r
                    for r in (await conn.execute(select(authorizations).where(a.id.in_(ids)))).all()
                }
            if all(r.call_status != -1 for r in rows.values()) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.2)
    finally:
        await db.close()
