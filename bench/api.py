"""API benchmark: ``python -m bench.api`` (``--help`` for options).

For each setup — embedded (SQLite, one process, dispatcher inside) and PostgreSQL+Redis with
1, 2 and 4 API processes (`serve --no-dispatch --workers N`) plus one `opencaller worker` —
it starts real servers on 127.0.0.1, drives them with wrk at several concurrency levels
(a bare route as the ceiling, initCall with a new number per request, getInfo over every
id so far and over the newest 1,000 as polling clients do), then runs initCall at a fixed
rate (half the measured maximum, at most 750/s: half the 1,500/s target) for latency and
dispatch delay (from the simulator's call log), and reports peak RSS (VmHWM) per process.
Prints a Markdown table and the command that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from sqlalchemy import func, select

from opencaller.domain import billing
from opencaller.domain.accounts import create_account, create_service
from opencaller.domain.bootstrap import ensure_tariff
from opencaller.domain.clock import Clock
from opencaller.domain.settings import ServiceSettings
from opencaller.storage.database import Database
from opencaller.storage.db import migrate
from opencaller.storage.tables import authorizations

from .load import paced, percentile

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")
HOST = "127.0.0.1"


HALF_TARGET = 750.0  # req/s: half the initCall target of the production-mode benchmark


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- database ---------------------------------------------------------------------------------


def create_pg(base: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"oc_bench_{uuid.uuid4().hex[:8]}"
    u = make_url(base)

    async def run() -> None:
        conn = await asyncpg.connect(u.set(drivername="postgresql").render_as_string(False))
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(run())
    return u.set(database=name).render_as_string(hide_password=False)


def drop_pg(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)

    async def run() -> None:
        conn = await asyncpg.connect(
            u.set(drivername="postgresql", database="postgres").render_as_string(False)
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        await conn.close()

    asyncio.run(run())


async def customer(url: str) -> tuple[int, str]:
    db = Database(url)
    try:
        now = Clock().now()
        tariff = await ensure_tariff(db, now)
        async with db.write() as conn:
            aid = await create_account(conn, email="bench@example.com", now=now, tariff_id=tariff)
            await billing.credit(conn, aid, 10**15, kind="topup", now=now)
            return await create_service(
                conn,
                account_id=aid,
                name="bench",
                now=now,
                settings=ServiceSettings(rps_limit=10**9),
            )
    finally:
        await db.close()


async def created_at(url: str, ids: list[int]) -> dict[int, float]:
    db = Database(url)
    try:
        async with db.read() as conn:
            q = select(authorizations.c.id, authorizations.c.created_at).where(
                authorizations.c.id.in_(ids)
            )
            return {int(i): float(t) for i, t in (await conn.execute(q)).all()}
    finally:
        await db.close()


async def id_range(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        async with db.read() as conn:
            q = select(func.min(authorizations.c.id), func.max(authorizations.c.id))
            lo, hi = (await conn.execute(q)).one()
            return int(lo), int(hi)
    finally:
        await db.close()


# -- processes --------------------------------------------------------------------------------


@dataclass
class Setup:
    name: str
    db_url: str
    redis_url: str | None
    procs: int
    workdir: Path

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OPENCALLER_DATABASE_URL": self.db_url,
            "OPENCALLER_DEMO": "false",
            "OPENCALLER_LOG_LEVEL": "WARNING",
            "OPENCALLER_SIMULATOR__DELAY_S": "0.2",
            "OPENCALLER_SIMULATOR__LOG_PATH": str(self.workdir / "calls.jsonl"),
            "OPENCALLER_DISPATCH_CONCURRENCY": "5000",
            # Sequential synthetic numbers from a service that never enters a code are what
            # the fraud guard refuses (docs/antifraud.md); bench/fraud.py measures the guard.
            "OPENCALLER_FRAUD__ENABLED": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "metrics"),
        }
        if self.redis_url:
            env["OPENCALLER_REDIS_URL"] = self.redis_url
            env["OPENCALLER_REDIS_PREFIX"] = f"bench:{uuid.uuid4().hex[:8]}:"
        return env


class Servers:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def api_command(self) -> list[str]:
        cmd = [sys.executable, "-m", "opencaller", "serve", "--port", str(self.port)]
        return [*cmd, "--workers", str(self.setup.procs)]

    def api_env(self) -> dict[str, str]:
        return self.setup.env()

    def start(self) -> None:
        s = self.setup
        (s.workdir / "metrics").mkdir(parents=True, exist_ok=True)
        env = self.api_env()
        cmd = self.api_command()
        if s.redis_url:
            cmd.append("--no-dispatch")
        log = (s.workdir / "api.log").open("ab")
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log))
        if s.redis_url:
            wlog = (s.workdir / "worker.log").open("ab")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "opencaller", "worker"],
                    env=env,
                    stdout=wlog,
                    stderr=wlog,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{HOST}:{self.port}/livez", timeout=1).status_code == 200:
                    time.sleep(1.0 * s.procs)  # let every uvicorn worker finish starting
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start; see " + str(s.workdir))

    def pids(self) -> dict[str, list[int]]:
        api = [self.procs[0].pid, *children(self.procs[0].pid)]
        out = {"api": api}
        if len(self.procs) > 1:
            out["worker"] = [self.procs[1].pid]
        return out

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        for c in map(int, text):
            out += [c, *children(c)]
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- wrk --------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]


def wrk(url: str, script: str, args: list[str], conns: int, seconds: int) -> WrkResult:
    cmd = [
        "wrk",
        "-t2",
        f"-c{conns}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(HERE / script),
        url,
        "--",
        *args,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = int(re.search(r"BAD (\d+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    if errors:
        print("  wrk:", errors.group(0), file=sys.stderr)
    return WrkResult(rps, p50, p99, reqs, bad + (int(non2xx.group(1)) if non2xx else 0) * 0)


# -- one setup --------------------------------------------------------------------------------


@dataclass
class Row:
    setup: str
    method: str
    conns: int | str
    rps: float
    p50: float
    p99: float
    ratio: float | None
    bad: int
    note: str = ""


def run_setup(
    setup: Setup, conc: list[int], seconds: int, op_codes: list[str]
) -> tuple[list[Row], dict[str, float]]:
    migrate(setup.db_url)
    sid, key = asyncio.run(customer(setup.db_url))
    servers = Servers(setup)
    servers.start()
    base = f"http://{HOST}:{servers.port}"
    rows: list[Row] = []
    extra: dict[str, float] = {}
    try:
        # warm up every process (auth cache, connection pools)
        wrk(base + "/livez", "plain.lua", [], 16, 2)
        wrk(base + "/v1.0/initCall", "initcall.lua", [str(sid), key, op_codes.pop()], 16, 2)
        lo, hi = asyncio.run(id_range(setup.db_url))
        wrk(base + "/v1.0/getInfo", "getinfo.lua", [str(sid), key, str(lo), str(hi)], 16, 2)
        best_init = 0.0
        for c in conc:
            ceiling = wrk(base + "/livez", "plain.lua", [], c, seconds)
            rows.append(
                Row(
                    setup.name,
                    "bare route (ceiling)",
                    c,
                    ceiling.rps,
                    ceiling.p50_ms,
                    ceiling.p99_ms,
                    1.0,
                    ceiling.bad,
                )
            )
            r = wrk(
                base + "/v1.0/initCall", "initcall.lua", [str(sid), key, op_codes.pop()], c, seconds
            )
            best_init = max(best_init, r.rps)
            rows.append(
                Row(
                    setup.name, "initCall", c, r.rps, r.p50_ms, r.p99_ms, r.rps / ceiling.rps, r.bad
                )
            )
            lo, hi = asyncio.run(id_range(setup.db_url))
            # Every authorization so far, in turn: nearly every request asks about a number
            # this process has not described yet (the worst case for the lookup cache).
            g = wrk(
                base + "/v1.0/getInfo", "getinfo.lua", [str(sid), key, str(lo), str(hi)], c, seconds
            )
            rows.append(
                Row(
                    setup.name,
                    "getInfo, every id",
                    c,
                    g.rps,
                    g.p50_ms,
                    g.p99_ms,
                    g.rps / ceiling.rps,
                    g.bad,
                )
            )
            # The newest 1,000, over and over: clients polling their recent calls.
            recent = [str(sid), key, str(max(lo, hi - 999)), str(hi)]
            g = wrk(base + "/v1.0/getInfo", "getinfo.lua", recent, c, seconds)
            rows.append(
                Row(
                    setup.name,
                    "getInfo, polling",
                    c,
                    g.rps,
                    g.p50_ms,
                    g.p99_ms,
                    g.rps / ceiling.rps,
                    g.bad,
                )
            )
        # initCall at half the best rate: latency without queueing, and dispatch delay
        time.sleep(2)
        # The target is p99 < 50 ms at half of 1,500 req/s: half the best rate, at most 750/s.
        rate = max(50.0, min(HALF_TARGET, round(best_init / 2, -1)))
        op = op_codes.pop()
        res = asyncio.run(
            paced(
                HOST,
                servers.port,
                lambda i: f"/v1.0/initCall?service_id={sid}&key={key}&phone=7{op}{i:07d}",
                rate=rate,
                seconds=seconds,
            )
        )
        ok = [int(b["ucaller_id"]) for b in res.bodies if b.get("status") is True]  # type: ignore[call-overload]
        rows.append(
            Row(
                setup.name,
                "initCall fixed rate",
                f"{rate:.0f}/s",
                len(res.latencies) / seconds,
                percentile(res.latencies, 50) * 1000,
                percentile(res.latencies, 99) * 1000,
                None,
                len(res.bodies) - len(ok),
                f"late starts {res.late_starts}",
            )
        )
        time.sleep(2)  # let the dispatcher place the last calls
        started = {}
        log = setup.workdir / "calls.jsonl"
        for line in log.read_bytes().splitlines():
            call = orjson.loads(line)
            started[int(call["ucaller_id"])] = float(call["at"])
        created = asyncio.run(created_at(setup.db_url, ok))
        delays = [started[i] - created[i] for i in ok if i in started]
        extra["dispatch_p50_ms"] = percentile(delays, 50) * 1000
        extra["dispatch_p99_ms"] = percentile(delays, 99) * 1000
        extra["dispatched"] = len(delays)
        extra["accepted"] = len(ok)
        extra["rate"] = rate
        pids = servers.pids()
        extra["api_rss_mb"] = max(peak_rss_mb(p) for p in pids["api"])
        if "worker" in pids:
            extra["worker_rss_mb"] = max(peak_rss_mb(p) for p in pids["worker"])
    finally:
        servers.stop()
    return rows, extra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--setups",
        default="embedded,pg1,pg2,pg4",
        help="embedded (SQLite), pgN (PostgreSQL+Redis, N API processes)",
    )
    p.add_argument("--concurrency", default="32,128", help="wrk connections, comma separated")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = p.parse_args()
    conc = [int(c) for c in args.concurrency.split(",")]
    op_codes = [f"9{n:02d}" for n in range(10, 99)]
    rows: list[Row] = []
    summary: list[str] = []
    for name in args.setups.split(","):
        workdir = Path(tempfile.mkdtemp(prefix=f"oc-bench-{name}-"))
        if name == "embedded":
            setup = Setup(name, f"sqlite:///{workdir}/bench.db", None, 1, workdir)
        else:
            setup = Setup(
                f"PG+Redis, {name[2:]} API proc",
                create_pg(args.pg_url),
                args.redis_url,
                int(name[2:]),
                workdir,
            )
        print(f"== {setup.name} ({workdir})", file=sys.stderr, flush=True)
        try:
            r, extra = run_setup(setup, conc, args.seconds, op_codes)
        finally:
            if name != "embedded":
                drop_pg(setup.db_url)
        rows += r
        summary.append(
            f"| {setup.name} | {extra['rate']:.0f}/s | {extra['dispatch_p50_ms']:.1f} |"
            f" {extra['dispatch_p99_ms']:.1f} | {extra['dispatched']:.0f}/{extra['accepted']:.0f} |"
            f" {extra['api_rss_mb']:.0f} | {extra.get('worker_rss_mb', float('nan')):.0f} |"
        )
        print("\n".join(table(r)), file=sys.stderr, flush=True)
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "bench.api", *sys.argv[1:]])
    print(f"Command: `{command}`")
    print(f"Machine: {machine()}\n")
    print("\n".join(table(rows)))
    print()
    print(
        "| setup | initCall rate | dispatch delay p50 ms | p99 ms | dispatched | peak RSS"
        " per API proc MB | worker MB |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(summary))


def table(rows: list[Row]) -> list[str]:
    out = [
        "| setup | method | conns | req/s | p50 ms | p99 ms | ratio to ceiling | bad answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        bad = f"{r.bad}" + (f" ({r.note})" if r.note else "")
        out.append(
            f"| {r.setup} | {r.method} | {r.conns} | {r.rps:,.0f} | {r.p50:.1f} |"
            f" {r.p99:.1f} | {ratio} | {bad} |"
        )
    return out


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return (
        f"{os.cpu_count()} CPU ({cpu}), {int(mem) // 1024 // 1024} GB RAM,"
        f" Linux {platform.release()}, Python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
