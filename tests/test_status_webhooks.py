"""Status webhooks (our extension): a service's status_url receives each authorization's
changes — dialing, finished, verified — signed, once per event_id, in order per
authorization; through the public API and a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import func, select, update
from typer.testing import CliRunner

from opencaller.cli.main import app as admin_cli
from opencaller.client.webhooks import InboundCall as InboundCallHook
from opencaller.client.webhooks import StatusEvent, verify_event
from opencaller.config import Settings, SimulatorSettings
from opencaller.domain.clock import Clock
from opencaller.storage.tables import accounts, services
from opencaller.storage.webhook_tables import status_events
from opencaller.telephony.base import InboundCall

from .dashboard_support import new_page
from .support import Api, make_api
from .test_openapi import fetch_document, webhook_validator

REACHED = "79000000001"  # test numbers: always reached / never reached, free
NOT_REACHED = "79000000002"
LOOPBACK = ["127.0.0.0/8"]


@dataclass
class Receiver:
    """A customer's status endpoint: answers 500 to its first ``fail_first`` requests."""

    fail_first: int = 0
    url: str = ""
    got: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b, status in self.got if status == 204]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.accepted()]


@contextlib.contextmanager
def receiver(fail_first: int = 0) -> Iterator[Receiver]:
    rec = Receiver(fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with rec.lock:
                status = 500 if rec.fail_first > 0 else 204
                rec.fail_first -= status == 500
                rec.got.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/status"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def api_with(settings: Settings, **update: Any) -> AsyncIterator[Api]:
    # Real time: deliveries are due by the wall clock the deliverer reads. Loopback is open to
    # webhooks here only because the operator allows it (webhook_allowed_networks).
    values = {"webhook_allowed_networks": LOOPBACK, "webhook_backoff_s": 0.05, **update}
    async with make_api(settings.model_copy(update=values), Clock()) as api:
        yield api


async def cli(api: Api, *args: str) -> Any:
    env = {
        "OPENCALLER_DATABASE_URL": api.rt.settings.database_url,
        "OPENCALLER_WEBHOOK_ALLOWED_NETWORKS": json.dumps(api.rt.settings.webhook_allowed_networks),
    }
    return await asyncio.to_thread(CliRunner().invoke, admin_cli, list(args), env=env)


async def set_status_url(api: Api, url: str) -> None:
    done = await cli(api, "service", "set", str(api.service_id), "--status-url", url)
    assert done.exit_code == 0, done.output
    assert f"status_url: {url or 'off'}" in done.output


async def wait_for(what: str, check: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def start(api: Api, phone: str = REACHED, code: str = "1234") -> int:
    body = await api.get("initCall", phone=phone, code=code)
    assert body["status"] is True, body
    return int(body["ucaller_id"])


async def recorded(api: Api) -> list[Any]:
    async with api.rt.db.read() as conn:
        return list((await conn.execute(select(status_events).order_by(status_events.c.id))).all())


async def settled(api: Api, within_s: float = 30.0) -> list[Any]:
    """The recorded events once none is pending (the receiver may answer before the worker
    has written down that it did)."""
    deadline = time.monotonic() + within_s
    while True:
        rows = await recorded(api)
        if all(r.state != "pending" for r in rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


def kinds_of(events: list[dict[str, Any]], uid: int) -> list[str]:
    return [e["event"] for e in events if e["ucaller_id"] == uid]


async def test_events_arrive_signed_once_each_and_in_order_despite_failures(
    settings: Settings,
) -> None:
    with receiver(fail_first=2) as rec:
        async with api_with(settings) as api:
            await set_status_url(api, rec.url)
            reached = await start(api)
            reached_info = await api.wait_final(reached)
            verified = await api.get("verifyCode", uid=reached, code="1234")
            assert verified["status"] is True, verified
            missed = await start(api, NOT_REACHED)
            missed_info = await api.wait_final(missed)
            await wait_for("five events accepted", lambda: len(rec.accepted()) >= 5)
            rows = await settled(api)
            documented = webhook_validator(await fetch_document(api), "statusEvent")
    # Every request is signed with the service's key and names its kind in a header.
    parsed: list[StatusEvent] = []
    for headers, body, _ in rec.got:
        event = verify_event(
            api.key,
            body,
            headers["x-opencaller-signature"],
            event=headers["x-opencaller-event"],
        )
        assert isinstance(event, StatusEvent)
        assert headers["x-opencaller-event"] == event.event
        assert event.service_id == api.service_id
        assert not list(documented.iter_errors(json.loads(body)))  # as /openapi.json says
        parsed.append(event)
    # The two refused attempts were sent again, the same event with the same id and body.
    assert [status for _, _, status in rec.got[:2]] == [500, 500]
    assert rec.got[0][1] in [b for _, b in rec.accepted()]
    # Each event arrived, each exactly once.
    events = rec.events()
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) == 5
    assert {e.event_id for e in parsed} == set(ids)
    assert sorted(ids) == sorted(r.event_id for r in rows)
    assert all(r.state == "delivered" for r in rows)  # nothing left to send again
    # In order per authorization, with what getInfo says about the outcome.
    assert kinds_of(events, reached) == ["dialing", "finished", "verified"]
    assert kinds_of(events, missed) == ["dialing", "finished"]
    finished = {e["ucaller_id"]: e for e in events if e["event"] == "finished"}
    for uid, info in ((reached, reached_info), (missed, missed_info)):
        assert finished[uid]["call_status"] == info["call_status"]
        assert finished[uid]["call_outcome"] == info["call_outcome"]
        assert "sip_code" in finished[uid]
    [verified_event] = [e for e in events if e["event"] == "verified"]
    assert verified_event["verified_at"] == verified["verified_at"]
    assert verified_event["timestamp"] == verified["verified_at"]


async def test_without_a_status_url_nothing_is_recorded_or_sent(settings: Settings) -> None:
    with receiver() as rec:
        async with api_with(settings) as api:
            uid = await start(api)
            await api.wait_final(uid)
            assert (await api.get("verifyCode", uid=uid, code="1234"))["status"] is True
            await api.wait_final(await start(api, NOT_REACHED))
            rows = await recorded(api)
    assert rows == []
    assert rec.got == []


async def test_the_cli_sets_and_clears_the_status_url(settings: Settings) -> None:
    with receiver() as rec:
        async with api_with(settings) as api:
            await set_status_url(api, rec.url)
            first = await start(api)
            await api.wait_final(first)
            await wait_for("the first call's events", lambda: len(rec.accepted()) >= 2)
            await set_status_url(api, "")  # off
            second = await start(api, NOT_REACHED)
            await api.wait_final(second)
            assert (await api.get("verifyCode", uid=first, code="1234"))["status"] is True
            rows = await recorded(api)
            # A receiver the installation does not allow is refused, and nothing changes.
            api.rt.settings.webhook_allowed_networks = []
            refused = await cli(api, "service", "set", str(api.service_id), "--status-url", rec.url)
            async with api.rt.db.read() as conn:
                stored = (
                    await conn.execute(
                        select(services.c.status_url).where(services.c.id == api.service_id)
                    )
                ).scalar_one()
    assert [r.authorization_id for r in rows] == [first, first]  # none once it was off
    assert kinds_of(rec.events(), first) == ["dialing", "finished"]
    assert refused.exit_code == 2
    assert "loopback" in refused.output
    assert stored is None


async def test_an_inbound_call_sends_verified_then_finished(settings: Settings) -> None:
    with receiver() as rec:
        async with api_with(settings) as api:
            await set_status_url(api, rec.url)
            waiting = await api.get("inboundCallWaiting", phone="79161234567", callback_url=rec.url)
            uid = waiting["ucaller_id"]
            call = InboundCall(
                caller="79161234567", called=waiting["confirmation_number"], at=time.time()
            )
            assert await api.rt.inbound.on_call(call) == uid
            await wait_for("three webhooks", lambda: len(rec.accepted()) >= 3)
            info = await api.get("getInfo", uid=uid)
            doc = await fetch_document(api)
    # One helper checks and parses both kinds of webhook; each matches its documented schema.
    parsed = []
    for headers, body in rec.accepted():
        event = verify_event(api.key, body, headers["x-opencaller-signature"])
        name = "inboundCall" if isinstance(event, InboundCallHook) else "statusEvent"
        assert not list(webhook_validator(doc, name).iter_errors(json.loads(body)))
        parsed.append(event)
    [callback] = [e for e in parsed if isinstance(e, InboundCallHook)]
    assert callback.call_id == str(uid)
    events = [json.loads(b) for h, b in rec.accepted() if h["x-opencaller-event"] != "inbound_call"]
    assert kinds_of(events, uid) == ["verified", "finished"]
    assert events[0]["verified_at"] == info["verified_at"]
    assert (events[1]["call_status"], events[1]["call_outcome"]) == (1, "delivered")


async def test_the_dashboard_sets_and_clears_the_status_url(settings: Settings) -> None:
    with receiver() as rec:
        async with api_with(settings) as api:
            page = new_page(api.client)
            await page.sign_up()
            async with api.rt.db.write() as conn:  # the service belongs to the new account
                newest = select(func.max(accounts.c.id)).scalar_subquery()
                await conn.execute(
                    update(services)
                    .where(services.c.id == api.service_id)
                    .values(account_id=newest)
                )
            path = f"/dashboard/services/{api.service_id}"
            saved = await page.follow(
                await page.post(f"{path}/status-url", {"status_url": rec.url})
            )
            assert f'value="{rec.url}"' in saved.text
            uid = await start(api)
            await api.wait_final(uid)
            await wait_for("the call's events", lambda: len(rec.accepted()) >= 2)
            api.rt.webhook_destinations = type(api.rt.webhook_destinations)()  # public only
            refused = await page.post(f"{path}/status-url", {"status_url": "http://127.0.0.1/x"})
            cleared = await page.follow(await page.post(f"{path}/status-url", {"status_url": ""}))
            later = await start(api, NOT_REACHED)
            await api.wait_final(later)
            rows = await recorded(api)
    assert kinds_of(rec.events(), uid) == ["dialing", "finished"]
    assert refused.status_code == 400
    assert "loopback" in refused.text
    assert 'name="status_url" type="url" value=""' in cleared.text
    assert {r.authorization_id for r in rows} == {uid}


async def test_a_paid_call_not_reached_is_refunded_and_reported(settings: Settings) -> None:
    busy = SimulatorSettings(delay_s=0.05, outcomes={"79161234567": "busy"})
    with receiver() as rec:
        async with api_with(settings, simulator=busy) as api:
            await set_status_url(api, rec.url)
            before = (await api.get("getBalance"))["rub_balance"]
            uid = await start(api, "79161234567")
            info = await api.wait_final(uid)
            await wait_for("the call's events", lambda: len(rec.accepted()) >= 2)
            after = (await api.get("getBalance"))["rub_balance"]
    assert (info["call_status"], info["call_outcome"]) == (0, "busy")
    assert after == before  # charged, then refunded in the outcome's transaction
    events = rec.events()
    assert kinds_of(events, uid) == ["dialing", "finished"]
    assert (events[1]["call_status"], events[1]["call_outcome"]) == (0, "busy")


async def test_metrics_show_events_waiting_for_a_failing_receiver(settings: Settings) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def gauge(text: str, name: str, **labels: str) -> float:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise AssertionError(f"{name} not exposed")

    with receiver(fail_first=1_000) as rec:
        async with api_with(settings, webhook_backoff_s=60) as api:
            quiet = (await api.client.get("/metrics")).text
            await set_status_url(api, rec.url)
            uid = await start(api)
            await api.wait_final(uid)
            await wait_for("a refused delivery", lambda: len(rec.got) >= 1)
            waiting = (await api.client.get("/metrics")).text
    assert gauge(quiet, "opencaller_status_events", state="pending") == 0
    # dialing waits for its retry; finished waits behind it (order per authorization)
    assert gauge(waiting, "opencaller_status_events", state="pending") == 2
    assert gauge(waiting, "opencaller_status_events_oldest_pending_seconds") >= 0
    assert len(rec.got) == 1  # nothing overtook the refused event


async def test_two_workers_deliver_each_event_once_and_in_order(settings: Settings) -> None:
    from opencaller.webhooks.destinations import DestinationPolicy
    from opencaller.webhooks.status import StatusDeliverer

    with receiver(fail_first=6) as rec:
        async with api_with(settings) as api:
            # A second worker's deliverer on the same database, racing the runtime's own.
            other = StatusDeliverer(
                api.rt.db.writer,
                policy=DestinationPolicy.from_settings(LOOPBACK),
                owner="other-worker",
                base_backoff_s=0.05,
                poll_interval_s=0.05,
            )
            stop = asyncio.Event()
            racing = asyncio.create_task(other.run(stop))
            try:
                await set_status_url(api, rec.url)
                uids = [await start(api, phone=REACHED if n % 2 else NOT_REACHED) for n in range(8)]
                for uid in uids:
                    await api.wait_final(uid)
                    assert (await api.get("verifyCode", uid=uid, code="1234"))["status"] is True
                await wait_for("24 events", lambda: len(rec.accepted()) >= 24)
                rows = await settled(api)
            finally:
                stop.set()
                await racing
    events = rec.events()
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) == len(rows) == 24
    for uid in uids:
        assert kinds_of(events, uid) == ["dialing", "finished", "verified"]
