"""Real servers in subprocesses: `python -m opencaller serve` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    url: str
    service_id: int
    key: str
    output: Path
    env: dict[str, str] = field(default_factory=dict)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def params(self, **extra: object) -> dict[str, object]:
        return {"service_id": self.service_id, "key": self.key, **extra}


def start_server(
    workdir: Path, env: dict[str, str], *, args: list[str] | None = None, name: str = "server"
) -> LiveServer:
    port = free_port()
    output = workdir / f"{name}-{port}.log"
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opencaller", "serve", "--port", str(port), *(args or [])],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=workdir,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    service_id, key = 0, ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{output.read_text()}")
        for line in output.read_text(errors="replace").splitlines():
            if line.strip().startswith("service_id:"):
                service_id = int(line.split()[-1])
            elif line.strip().startswith("key:"):
                key = line.split()[-1]
        if key:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return LiveServer(proc, url, service_id, key, output, env)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{output.read_text()}")
