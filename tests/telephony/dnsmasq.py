"""A real DNS server for the tests: dnsmasq serving NAPTR, SRV and A records from a file on
a free 127.0.0.1 port (Debian: dnsmasq-base). Killed by its PID at teardown."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dnsmasq:
    """``records`` are dnsmasq options, e.g. ``srv-host=_sip._udp.t.test,a.t.test,5060,10,50``."""

    def __init__(self, workdir: Path, records: list[str], ttl: int = 60) -> None:
        self.workdir = workdir
        self.records = records
        self.ttl = ttl
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dnsmasq:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "dnsmasq.conf"
        for _ in range(3):
            self.port = _free_udp_port()
            conf.write_text(
                "\n".join(
                    [
                        f"port={self.port}",
                        "listen-address=127.0.0.1",
                        "bind-interfaces",
                        "no-resolv",
                        "no-hosts",
                        "no-negcache",
                        "local=/test/",  # authoritative: unknown names are NXDOMAIN
                        f"local-ttl={self.ttl}",
                        "user=root",
                        *self.records,
                    ]
                )
                + "\n"
            )
            log = (self.workdir / "dnsmasq.log").open("wb")
            self.proc = subprocess.Popen(
                [DNSMASQ, "-k", f"--conf-file={conf}", "--pid-file=", "--log-facility=-"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if self._ready():
                return self
            self.stop()
        raise RuntimeError("dnsmasq did not start: " + (self.workdir / "dnsmasq.log").read_text())

    def _ready(self) -> bool:
        deadline = time.monotonic() + 5
        query = dns.message.make_query("ready.invalid", dns.rdatatype.A)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
                return True
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
        return False

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
