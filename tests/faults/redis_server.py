"""Private Redis servers for fault tests: started on a free port in a temp dir, stopped,
restarted on the same port, frozen and thawed — never the shared Redis on 6379.

``RedisServer`` is one redis-server; ``RedisSentinel`` one sentinel monitoring a primary.
Every signal goes to the pid of a process started here, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ask(port: int, *command: str, timeout: float = 1.0) -> bytes:
    """One command over a fresh connection (RESP), the raw reply."""
    payload = f"*{len(command)}\r\n".encode()
    for part in command:
        payload += f"${len(part.encode())}\r\n{part}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(65536)


def answers(port: int) -> bool:
    try:
        return ask(port, "PING", timeout=0.5).startswith(b"+PONG")
    except OSError:
        return False


class _Process:
    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def _command(self) -> list[str]:
        raise NotImplementedError

    def start(self, within_s: float = 20.0) -> None:
        assert self.proc is None, f"{self.name} is running"
        log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            self._command(), cwd=self.dir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + within_s
        while not answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.dir / 'server.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Gone at once, like a crash: its data (none saved) is lost."""
        if self.proc is None:
            return
        self.thaw()
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.proc is not None and self.frozen:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


class RedisServer(_Process):
    def __init__(self, directory: Path, name: str = "redis", *, replica_of: int | None = None):
        super().__init__(directory, name)
        self.replica_of = replica_of

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
        ]  # fmt: skip
        if self.replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return command

    def keys(self, pattern: str) -> int:
        """How many keys match (DBSIZE-like, for assertions about where data went)."""
        reply = ask(self.port, "KEYS", pattern)
        return int(reply.split(b"\r\n", 1)[0][1:])


class RedisSentinel(_Process):
    """One sentinel watching ``primary`` as ``master`` (quorum 1: it alone decides)."""

    def __init__(self, directory: Path, primary: int, master: str = "mymaster") -> None:
        super().__init__(directory, "sentinel")
        self.primary = primary
        self.master = master

    def _command(self) -> list[str]:
        conf = self.dir / "sentinel.conf"
        if not conf.exists():  # the sentinel rewrites it as it learns
            conf.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.dir}\n"
                f"sentinel monitor {self.master} 127.0.0.1 {self.primary} 1\n"
                f"sentinel down-after-milliseconds {self.master} 1000\n"
                f"sentinel failover-timeout {self.master} 5000\n"
                f"sentinel parallel-syncs {self.master} 1\n"
            )
        return ["redis-server", str(conf), "--sentinel"]

    def primary_port(self) -> int:
        reply = ask(self.port, "SENTINEL", "get-master-addr-by-name", self.master)
        return int(reply.split(b"\r\n")[4])
