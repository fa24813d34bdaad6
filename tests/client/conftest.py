"""A live opencaller server for the client tests: a real `opencaller serve` subprocess."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from opencaller.client import AsyncClient, Client

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass(frozen=True)
class Live:
    url: str
    service_id: int
    key: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "OPENCALLER_URL": self.url,
            "OPENCALLER_SERVICE_ID": str(self.service_id),
            "OPENCALLER_KEY": self.key,
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _read_credentials(proc: subprocess.Popen[str], deadline: float) -> tuple[int, str]:
    # A reader thread, so a server that hangs before printing cannot hang the tests.
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    service_id: int | None = None
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            if proc.poll() is not None:
                break  # exited before printing its credentials
            continue
        if m := re.match(r"\s*service_id:\s*(\d+)", line):
            service_id = int(m.group(1))
        elif (m := re.match(r"\s*key:\s*(\S+)", line)) and service_id is not None:
            return service_id, m.group(1)
    raise RuntimeError("opencaller serve did not print the demo credentials")


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live")
    port = _free_port()
    # Only our settings: an OPENCALLER_CONFIG or REDIS_URL of the caller must not leak in.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("OPENCALLER_")}
    env = {
        **inherited,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "OPENCALLER_DATABASE_URL": f"sqlite:///{tmp}/db.sqlite",
        "OPENCALLER_SIMULATOR__DELAY_S": "0.2",
        "OPENCALLER_POLL_INTERVAL_S": "0.05",
        "OPENCALLER_DEMO": "true",
    }
    stderr = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencaller", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        service_id, key = _read_credentials(proc, deadline)
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).json().get("status") is True:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy; see {tmp / 'server.log'}")
            time.sleep(0.1)
        yield Live(url, service_id, key)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()


@pytest.fixture
def client(live: Live) -> Iterator[Client]:
    with Client(live.service_id, live.key, base_url=live.url) as c:
        yield c


@pytest.fixture
async def aclient(live: Live) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(live.service_id, live.key, base_url=live.url) as c:
        yield c
