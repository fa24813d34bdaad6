"""A crash while calls are pending loses nothing and calls nobody twice."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from .live import LiveServer, start_server

pytestmark = pytest.mark.slow


def calls_logged(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(line)["ucaller_id"] for line in path.read_text().splitlines() if line]


def wait_for(predicate: object, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_during_pending_calls_then_restart(tmp_path: Path, db_url: str) -> None:
    log = tmp_path / "calls.jsonl"
    env = {
        "OPENCALLER_DATABASE_URL": db_url,
        "OPENCALLER_SIMULATOR__DELAY_S": "3",
        "OPENCALLER_SIMULATOR__LOG_PATH": str(log),
        "OPENCALLER_DISPATCH_CONCURRENCY": "4",
        "OPENCALLER_LEASE_S": "2",
        "OPENCALLER_POLL_INTERVAL_S": "0.1",
    }
    server = start_server(tmp_path, env)
    try:
        phones = [f"7916{n:07d}" for n in range(1000, 1012)]
        ids = []
        for phone in phones:
            body = httpx.get(
                f"{server.url}/v1.0/initCall", params=server.params(phone=phone)
            ).json()
            assert body["status"] is True, body
            ids.append(body["ucaller_id"])
        # Four calls are ringing (concurrency 4), eight wait in the queue: kill now.
        wait_for(lambda: len(calls_logged(log)) >= 4, 10, "four calls to start")
        time.sleep(0.3)
        server.kill(signal.SIGKILL)
        in_flight_at_kill = calls_logged(log)
        assert len(in_flight_at_kill) == 4
    finally:
        server.kill()

    restarted: LiveServer = start_server(tmp_path, env, name="restarted")
    try:

        def all_final() -> bool:
            return all(
                httpx.get(f"{restarted.url}/v1.0/getInfo", params=restarted.params(uid=uid)).json()[
                    "call_status"
                ]
                != -1
                for uid in ids
            )

        wait_for(all_final, 60, "every authorization to reach a final status")
        infos = {
            uid: httpx.get(f"{restarted.url}/v1.0/getInfo", params=restarted.params(uid=uid)).json()
            for uid in ids
        }
        balance = httpx.get(f"{restarted.url}/v1.0/getBalance", params=restarted.params()).json()
    finally:
        restarted.kill(signal.SIGTERM)

    called = calls_logged(log)
    assert sorted(called) == sorted(ids), "every accepted id is called exactly once"
    for uid in ids:
        if uid in in_flight_at_kill:
            assert infos[uid]["call_status"] == 0
            assert infos[uid]["call_outcome"] == "interrupted"
        else:
            assert infos[uid]["call_status"] == 1
            assert infos[uid]["call_outcome"] == "delivered"
    # The four interrupted calls were refunded: 8 paid calls at 0.30 from the demo 1000.
    assert balance["rub_balance"] == pytest.approx(1000 - 8 * 0.3)
