"""Soak benchmark: ``python -m bench.soak`` (``--help`` for options).

Starts real servers on 127.0.0.1 (``embedded``: ``opencaller serve`` on SQLite with the
dispatcher inside; ``pg``: ``serve --no-dispatch`` plus one ``opencaller worker`` on PostgreSQL
+ Redis), sends a fixed rate of mixed requests (one initCall with a new number for every
``--getinfo-per-init`` getInfo over the newest 1,000 ids, and now and then a request with a
wrong key from a new address) for ``--minutes``, samples every server process's RSS every
``--every`` seconds and prints RSS over time. Memory that only grows shows as a slope after
warm-up. ``--trace`` runs the API under tracemalloc (bench/soak_server.py) and writes the
allocation sites that grew most to ``soak-trace.txt`` in the work directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

import orjson

from .api import HOST, Servers, Setup, create_pg, customer, drop_pg, free_port
from .load import Conn


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TracedServers(Servers):
    """The API process started through bench/soak_server.py (tracemalloc on)."""

    def api_command(self) -> list[str]:
        return [sys.executable, "-m", "bench.soak_server", "serve", "--port", str(self.port)]

    def api_env(self) -> dict[str, str]:
        s = self.setup
        env = {**s.env(), "SOAK_TRACE_FILE": str(s.workdir / "soak-trace.txt")}
        env["PYTHONPATH"] = (
            str(Path(__file__).resolve().parent.parent) + os.pathsep + env["PYTHONPATH"]
        )
        return env

    def snapshot(self) -> None:
        os.kill(self.procs[0].pid, signal.SIGUSR1)


async def drive(
    port: int,
    sid: int,
    key: str,
    *,
    rate: float,
    seconds: float,
    getinfo_per_init: int,
    every: float,
    pids: dict[str, list[int]],
    on_sample: list[object],
) -> tuple[list[tuple[float, dict[str, float], int, int]], int, int]:
    """Open-loop load; returns samples (t, RSS MB by role, requests, bad answers so far)."""
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await Conn.open(HOST, port))
    recent: deque[int] = deque(maxlen=1000)
    sent = bad = 0
    errors: Counter[str] = Counter()
    samples: list[tuple[float, dict[str, float], int, int]] = []
    creds = f"service_id={sid}&key={key}"

    async def one(i: int) -> None:
        nonlocal bad
        if i % (getinfo_per_init + 1) == 0 or not recent:
            path = f"/v1.0/initCall?{creds}&phone=79{160_000_000 + i:09d}"
        else:
            path = f"/v1.0/getInfo?{creds}&uid={recent[i % len(recent)]}"
        conn = await pool.get()
        try:
            body = orjson.loads(await conn.get(HOST, path))
        finally:
            pool.put_nowait(conn)
        if "initCall" in path and body.get("status"):
            recent.append(int(body["ucaller_id"]))
        elif not body.get("status"):
            bad += 1
            errors[f"{path.split('?')[0]} code {body.get('code')}"] += 1

    def sample(t: float) -> None:
        rss = {role: sum(rss_mb(p) for p in ps) for role, ps in pids.items()}
        samples.append((t, rss, sent, bad))
        line = "  ".join(f"{role} {mb:7.1f} MB" for role, mb in rss.items())
        print(f"{t:7.0f} s  {line}  requests {sent:8d}  bad {bad}", flush=True)
        for hook in on_sample:
            hook(t)  # type: ignore[operator]

    t0 = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    next_sample = 0.0
    total = int(rate * seconds)
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if due - t0 >= next_sample:
            sample(due - t0)
            next_sample += every
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    await asyncio.gather(*tasks)
    sample(time.perf_counter() - t0)
    while not pool.empty():
        pool.get_nowait().close()
    if errors:
        print("bad answers:", dict(errors))
    return samples, sent, bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--setup", choices=["embedded", "pg"], default="embedded")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--getinfo-per-init", type=int, default=3)
    ap.add_argument("--trace", action="store_true", help="tracemalloc diff in the work dir")
    ap.add_argument(
        "--pg",
        default=os.environ.get(
            "OPENCALLER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="opencaller-soak-"))
    if args.setup == "pg":
        db_url, redis_url = create_pg(args.pg), args.redis
    else:
        db_url, redis_url = f"sqlite:///{workdir}/opencaller.db", None
    from opencaller.storage.db import migrate

    migrate(db_url)
    sid, key = asyncio.run(customer(db_url))
    setup = Setup(args.setup, db_url, redis_url, 1, workdir)
    servers: Servers = (TracedServers if args.trace else Servers)(setup)
    servers.port = free_port()
    print("command:", shlex.join(["python", "-m", "bench.soak", *sys.argv[1:]]))
    print(f"work dir: {workdir}")
    try:
        servers.start()
    except BaseException:
        servers.stop()
        raise
    hooks: list[object] = []
    if isinstance(servers, TracedServers):
        traced = servers
        traced.snapshot()  # the baseline, after start-up
        hooks.append(lambda t: traced.snapshot() if t >= 60 and int(t) % 60 < args.every else None)
    try:
        pids = servers.pids()
        samples, sent, bad = asyncio.run(
            drive(
                servers.port,
                sid,
                key,
                rate=args.rate,
                seconds=args.minutes * 60,
                getinfo_per_init=args.getinfo_per_init,
                every=args.every,
                pids=pids,
                on_sample=hooks,
            )
        )
        if isinstance(servers, TracedServers):
            servers.snapshot()
            time.sleep(3)
    finally:
        servers.stop()
        if args.setup == "pg":
            drop_pg(db_url)
    print_summary(samples, sent, bad)


def print_summary(
    samples: list[tuple[float, dict[str, float], int, int]], sent: int, bad: int
) -> None:
    print()
    roles = list(samples[0][1])
    print("| t (s) | " + " | ".join(f"{r} RSS (MB)" for r in roles) + " | requests |")
    print("|---|" + "---|" * len(roles) + "---|")
    for t, rss, n, _bad in samples:
        print(f"| {t:.0f} | " + " | ".join(f"{rss[r]:.1f}" for r in roles) + f" | {n:,} |")
    warm = [s for s in samples if s[0] >= 60]
    if len(warm) >= 2:
        for r in roles:
            first, last = warm[0], warm[-1]
            slope = (last[1][r] - first[1][r]) / max(1.0, (last[0] - first[0]) / 60)
            print(
                f"{r}: {first[1][r]:.1f} MB at {first[0]:.0f} s -> {last[1][r]:.1f} MB at "
                f"{last[0]:.0f} s ({slope:+.2f} MB/min after warm-up)"
            )
    print(f"requests {sent:,}, bad answers {bad}")


if __name__ == "__main__":
    main()
