"""Running SIPp as the far end of the trunk in tests (127.0.0.1 only)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"
_KV = re.compile(r"([a-z_-]+)=(\S*)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(template: str, dest: Path, **subst: str) -> Path:
    """Write a scenario from a ``*.tmpl.xml`` file, replacing ``@KEY@`` markers."""
    text = (SCENARIOS / template).read_text()
    for k, v in subst.items():
        text = text.replace(f"@{k}@", v)
    dest.write_text(text)
    return dest


@dataclass
class SippRun:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    argv: list[str]
    returncode: int | None = None
    _lines: list[str] = field(default_factory=list)

    @property
    def log_file(self) -> Path:
        return self.workdir / "logs.log"

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for SIPp to exit (killing it after ``timeout``) and return its exit code."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.returncode = -9
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def assert_ok(self, timeout: float = 60.0) -> None:
        code = self.finish(timeout)
        assert code == 0, f"sipp exited with {code}\n{self.diagnostics()}"

    def diagnostics(self) -> str:
        parts = [" ".join(self.argv)]
        for name in ("err.log", "screen.log", "stderr.log"):
            p = self.workdir / name
            if p.exists():
                parts.append(f"--- {name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def lines(self, kind: str | None = None) -> list[dict[str, str]]:
        """Parsed ``<log>`` lines: ``KIND k=v k=v``; ``kind`` filters on the first word."""
        out = []
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        for line in text.splitlines():
            words = line.split()
            if not words:
                continue
            if kind is not None and words[0] != kind:
                continue
            row = {"kind": words[0], **dict(_KV.findall(line))}
            out.append(row)
        return out


class Sipp:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("sipp")
        if exe is None:
            raise RuntimeError("sipp is not installed (Debian/Ubuntu: apt-get install sip-tester)")
        self.exe = exe
        self.workdir = workdir
        self.runs: list[SippRun] = []

    def start(
        self,
        scenario: str | Path,
        *,
        calls: int = 1,
        keys: dict[str, str] | None = None,
        remote: str | None = None,
        inf: Path | None = None,
        rate: float | None = None,
        extra: list[str] | None = None,
        port: int | None = None,
    ) -> SippRun:
        """``port``: listen there (e.g. to restart a far end where it was); default a free one."""
        for attempt in range(3):
            try:
                return self._start(scenario, calls, keys, remote, inf, rate, extra, port)
            except PortTaken:  # another process took the free port before SIPp bound it
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _start(
        self,
        scenario: str | Path,
        calls: int,
        keys: dict[str, str] | None,
        remote: str | None,
        inf: Path | None,
        rate: float | None,
        extra: list[str] | None,
        port: int | None = None,
    ) -> SippRun:
        port = port or free_udp_port()
        wd = self.workdir / f"sipp{len(self.runs)}"
        wd.mkdir(parents=True)
        sf = scenario if isinstance(scenario, Path) else SCENARIOS / scenario
        argv = [
            self.exe,
            "-sf", str(sf),
            "-i", "127.0.0.1",
            "-p", str(port),
            "-mi", "127.0.0.1",
            "-mp", str(free_udp_port()),
            "-m", str(calls),
            "-nostdin",
            "-buff_size", "4194304",
            "-trace_logs", "-log_file", str(wd / "logs.log"),
            "-trace_err", "-error_file", str(wd / "err.log"),
            "-trace_screen", "-screen_file", str(wd / "screen.log"),
        ]  # fmt: skip
        for k, v in (keys or {}).items():
            argv += ["-key", k, v]
        if inf is not None:
            argv += ["-inf", str(inf)]
        if rate is not None:
            argv += ["-r", str(rate)]
        argv += extra or []
        if remote is not None:
            argv.append(remote)
        stderr = (wd / "stderr.log").open("wb")
        proc = subprocess.Popen(
            argv, cwd=wd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        run = SippRun(proc, port, wd, argv)
        self.runs.append(run)
        if remote is None:
            _wait_bound(run)
        return run

    def cleanup(self) -> None:
        for run in self.runs:
            run.kill()


class PortTaken(AssertionError):
    """SIPp could not bind the port it was given."""


def _udp_bound(port: int) -> bool:
    """Whether some socket holds UDP ``port`` on 127.0.0.1, read from /proc: probing by
    binding the port ourselves could take it from SIPp in the instant it binds."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        return any(line.split()[1] == wanted for line in table.readlines()[1:])


def _tcp_listening(port: int) -> bool:
    """Whether some socket listens on TCP ``port`` at 127.0.0.1 (state 0A), from /proc."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(
            (cols := line.split())[1] == wanted and cols[3] == "0A"
            for line in table.readlines()[1:]
        )


def _wait_bound(run: SippRun, timeout: float = 10.0) -> None:
    """Wait until SIPp listens on its port (it binds a moment after starting)."""
    argv = run.argv
    tcp = "-t" in argv and argv[argv.index("-t") + 1].startswith(("t", "l"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            diagnostics = run.diagnostics()
            if "Address already in use" in diagnostics:
                raise PortTaken(diagnostics)
            raise AssertionError(f"sipp exited early ({run.proc.returncode})\n{diagnostics}")
        if _tcp_listening(run.port) if tcp else _udp_bound(run.port):
            return
        time.sleep(0.05)
    raise AssertionError(f"sipp did not bind port {run.port}\n{run.diagnostics()}")
