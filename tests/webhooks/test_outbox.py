"""Webhook outbox against a real local HTTP receiver, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from opencaller.client.webhooks import WebhookSignatureError, sign
from opencaller.client.webhooks import verify as verify_or_raise
from opencaller.storage.db import create_engine, migrate_async
from opencaller.storage.tables import accounts, services
from opencaller.storage.webhook_tables import webhook_outbox
from opencaller.webhooks.deliverer import WebhookDeliverer
from opencaller.webhooks.destinations import DestinationPolicy
from opencaller.webhooks.outbox import InboundCallPayload, enqueue_inbound_call


def verify(secret: str, body: bytes, header: str, now: float | None = None) -> bool:
    try:
        verify_or_raise(secret, body, header, now=now)
    except WebhookSignatureError:
        return False
    return True


PG_URL = os.environ.get("OPENCALLER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "0123456789abcdef0123456789abcdef"
# The receivers here listen on loopback, which webhooks may reach only when allowed.
LOOPBACK = DestinationPolicy.from_settings(["127.0.0.0/8"])


@dataclass
class Receiver:
    url: str
    fail_first: list[int]
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(url="", fail_first=[0])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            failing = rec.fail_first[0] > 0
            if failing:
                rec.fail_first[0] -= 1
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'oc.db'}"
        await migrate_async(url)
        eng = create_engine(url)
        yield eng
        await eng.dispose()
        return
    import asyncpg  # a throwaway database per test, dropped afterwards

    name = f"oc_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_URL.replace("postgresql://", "postgres://"))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
        await migrate_async(url)
        eng = create_engine(url)
        try:
            yield eng
        finally:
            await eng.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _service(engine: AsyncEngine) -> int:
    now = time.time()
    async with engine.begin() as conn:
        acc = await conn.execute(
            insert(accounts)
            .values(email=f"{uuid.uuid4().hex}@x.test", created_at=now, updated_at=now)
            .returning(accounts.c.id)
        )
        svc = await conn.execute(
            insert(services)
            .values(
                account_id=acc.scalar_one(),
                name="shop",
                secret_key=SECRET,
                settings={},
                created_at=now,
            )
            .returning(services.c.id)
        )
        return int(svc.scalar_one())


PAYLOAD = InboundCallPayload(
    call_id="1001",
    callback_link="https://example.test/cb",
    client_number="79161234567",
    confirmation_number="74950000001",
    is_mnp=False,
    operator_name="MTS",
    operator_name_mnp=None,
    region_name="Moscow",
)


async def test_delivers_signed_payload(engine: AsyncEngine, receiver: Receiver) -> None:
    sid = await _service(engine)
    async with engine.begin() as conn:
        row_id = await enqueue_inbound_call(conn, service_id=sid, url=receiver.url, payload=PAYLOAD)
    d = WebhookDeliverer(engine, policy=LOOPBACK, base_backoff_s=0.05)
    try:
        assert await d.run_once() == 1
        assert await d.run_once() == 0  # nothing left
    finally:
        await d.aclose()
    assert len(receiver.got) == 1
    headers, body = receiver.got[0]
    assert json.loads(body) == {
        "callId": "1001",
        "callbackLink": "https://example.test/cb",
        "clientNumber": "79161234567",
        "confirmationNumber": "74950000001",
        "isMnp": False,
        "operatorName": "MTS",
        "operatorNameMnp": None,
        "regionName": "Moscow",
    }
    assert headers["x-opencaller-event"] == "inbound_call"
    assert verify(SECRET, body, headers["x-opencaller-signature"])
    assert not verify("other-secret", body, headers["x-opencaller-signature"])
    assert not verify(SECRET, body + b" ", headers["x-opencaller-signature"])
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(webhook_outbox).where(webhook_outbox.c.id == row_id))
        ).one()
    assert row.state == "delivered" and row.attempts == 1 and row.last_status == 204


async def test_failing_receiver_gets_retries(engine: AsyncEngine, receiver: Receiver) -> None:
    receiver.fail_first[0] = 2
    sid = await _service(engine)
    async with engine.begin() as conn:
        await enqueue_inbound_call(conn, service_id=sid, url=receiver.url, payload=PAYLOAD)
    d = WebhookDeliverer(engine, policy=LOOPBACK, base_backoff_s=0.1, poll_interval_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        for _ in range(200):
            async with engine.connect() as conn:
                state = (await conn.execute(select(webhook_outbox.c.state))).scalar_one()
            if state != "pending":
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    async with engine.connect() as conn:
        row = (await conn.execute(select(webhook_outbox))).one()
    assert row.state == "delivered" and row.attempts == 3
    assert len(receiver.got) == 3
    assert all(verify(SECRET, b, h["x-opencaller-signature"]) for h, b in receiver.got)


async def test_gives_up_after_max_attempts(engine: AsyncEngine, receiver: Receiver) -> None:
    receiver.fail_first[0] = 100
    sid = await _service(engine)
    async with engine.begin() as conn:
        await enqueue_inbound_call(
            conn, service_id=sid, url=receiver.url, payload=PAYLOAD, max_attempts=2
        )
    d = WebhookDeliverer(engine, policy=LOOPBACK, base_backoff_s=0.0)
    try:
        await d.run_once()
        await d.run_once()
        assert await d.run_once() == 0
    finally:
        await d.aclose()
    async with engine.connect() as conn:
        row = (await conn.execute(select(webhook_outbox))).one()
    assert row.state == "failed" and row.attempts == 2 and row.last_status == 500


async def test_rolled_back_enqueue_sends_nothing(engine: AsyncEngine, receiver: Receiver) -> None:
    sid = await _service(engine)
    async with engine.connect() as conn:
        await conn.begin()
        await enqueue_inbound_call(conn, service_id=sid, url=receiver.url, payload=PAYLOAD)
        await conn.rollback()
    d = WebhookDeliverer(engine, policy=LOOPBACK)
    try:
        assert await d.run_once() == 0
    finally:
        await d.aclose()
    assert receiver.got == []


async def test_two_workers_never_send_one_row_twice(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    sid = await _service(engine)
    async with engine.begin() as conn:
        for i in range(20):
            await enqueue_inbound_call(
                conn,
                service_id=sid,
                url=receiver.url,
                payload=dataclasses.replace(PAYLOAD, call_id=str(i)),
            )
    a, b = (
        WebhookDeliverer(engine, policy=LOOPBACK, batch=7),
        WebhookDeliverer(engine, policy=LOOPBACK, batch=7),
    )
    try:
        for _ in range(4):
            counts = await asyncio.gather(a.run_once(), b.run_once())
            assert max(counts) <= 7  # the batch size bounds each lease
    finally:
        await a.aclose()
        await b.aclose()
    ids = sorted(int(json.loads(body)["callId"]) for _, body in receiver.got)
    assert ids == list(range(20))


def test_signature_roundtrip_and_tolerance() -> None:
    body = b'{"a":1}'
    h = sign("k", body, t=1_700_000_000)
    assert h.startswith("t=1700000000,v1=")
    assert verify("k", body, h, now=1_700_000_100)
    assert not verify("k", body, h, now=1_700_000_000 + 301)
    assert verify("k", body, h + ",v1=deadbeef", now=1_700_000_000)  # rotation: any v1 matches
    assert not verify("k", body, "garbage")
