"""A private PostgreSQL cluster for fault tests: one we may stop, restart and freeze.

The Debian binaries (``/usr/lib/postgresql/*/bin``) run a throwaway cluster in a temp dir on a
free loopback port. PostgreSQL refuses to run as root, and tests run as root here and in CI,
so the server runs as the ``postgres`` user. Only this cluster's processes are ever signalled:
the shared cluster on 5432 is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..cluster import free_port


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3])
    )
    return Path(found[-1]).parent if found else None


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@dataclass
class PrivatePostgres:
    bin: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, db: str = "opencaller") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(_as_postgres(list(args)), capture_output=True, check=check)

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                "max_connections = 200\nshared_buffers = 32MB\n"
            )
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "opencaller")

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def pids(self) -> list[int]:
        """The postmaster and every child of it (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # "pid (comm) state ppid ...": comm may hold spaces, so split after ")"
                fields = stat.read_text().rpartition(")")[2].split()
                if int(fields[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP the cluster: connections stay open, nothing answers (not down)."""
        postmaster = self.pids()[0]
        os.kill(postmaster, signal.SIGSTOP)  # first, so it forks nothing new meanwhile
        for pid in self.pids()[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        postmaster, *children = self.pids()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.kill(postmaster, signal.SIGCONT)

    def ready(self) -> bool:
        return (
            self._run(
                str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), check=False
            ).returncode
            == 0
        )

    def wait_ready(self, within_s: float = 30.0) -> None:
        deadline = time.monotonic() + within_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"private PostgreSQL did not answer: {self.log.read_text()}")
            time.sleep(0.1)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="oc-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = PrivatePostgres(bin_dir, root, free_port())
    try:
        pg.init()
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.thaw()
        if pg.running():
            pg._run(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(pg.data),
                "-m",
                "immediate",
                "-w",
                "stop",
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
