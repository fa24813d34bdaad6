"""Flash calls end to end on PostgreSQL + Redis: ``python -m bench.sip_flash`` (``--help``).

HTTP initCall (open loop, paced) -> API (``serve --no-dispatch``) -> PostgreSQL -> one
``opencaller worker`` -> SIP (UDP, or ``--transport tcp``) -> SIPp, which rings (180) and takes
our CANCEL. Checks every call: the number SIPp saw in From and P-Asserted-Identity ends in
the code asked for that phone (wrong caller IDs), each phone got exactly one INVITE (lost,
duplicated), and getInfo ends with call_status 1. Reports the calls/s SIPp received and the
delay from the initCall answer to the INVITE's arrival at SIPp (p50/p99).

A private database is created next to ``--pg`` and dropped at the end; Redis keys get a
fresh prefix. Everything runs on 127.0.0.1: the load generator, the API, the worker and
SIPp share the machine, so the numbers are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .api import HOST, Servers, Setup, create_pg, customer, drop_pg
from .load import Conn, percentile

SCENARIO = Path(__file__).resolve().parent / "uas_flash_timed.xml"
LOG_LINE = re.compile(
    r"from_num=(\d+) pai_num=(\d+) to_num=(\d+) at=(\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d(?:\.\d+)?)"
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Driven:
    codes: dict[str, str] = field(default_factory=dict)  # phone -> code, accepted calls
    answered_at: dict[str, float] = field(default_factory=dict)  # phone -> epoch seconds
    refused: int = 0
    late_starts: int = 0
    took_s: float = 0.0
    ids: list[int] = field(default_factory=list)


async def drive(port: int, sid: int, key: str, rate: float, calls: int) -> Driven:
    """Open loop: initCall ``i`` starts at ``i / rate`` whatever the earlier ones do."""
    out = Driven()
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(256):
        pool.put_nowait(await Conn.open(HOST, port))
    t0 = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        phone, code = f"7916{i:07d}", f"{(i * 37) % 10000:04d}"
        path = f"/v1.0/initCall?service_id={sid}&key={key}&phone={phone}&code={code}"
        conn = await pool.get()
        try:
            body = orjson.loads(await conn.get(HOST, path))
        finally:
            pool.put_nowait(conn)
        if body.get("status"):
            out.codes[phone] = code
            out.answered_at[phone] = time.time()
            out.ids.append(int(body["ucaller_id"]))
        else:
            out.refused += 1
            if out.refused <= 5:
                print("refused:", body, file=sys.stderr)

    tasks = []
    for i in range(calls):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            out.late_starts += 1
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    out.took_s = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait().close()
    return out


async def final_statuses(port: int, sid: int, key: str, ids: list[int]) -> dict[int, int]:
    """call_status per id, waiting (up to a minute) for calls still in progress."""
    conns = [await Conn.open(HOST, port) for _ in range(32)]
    out: dict[int, int] = {}

    async def worker(conn: Conn, mine: list[int]) -> None:
        for uid in mine:
            for _ in range(300):
                path = f"/v1.0/getInfo?service_id={sid}&key={key}&uid={uid}"
                body = orjson.loads(await conn.get(HOST, path))
                status = int(body.get("call_status", -1))
                if status != -1:
                    out[uid] = status
                    break
                await asyncio.sleep(0.2)

    await asyncio.gather(*(worker(c, ids[i :: len(conns)]) for i, c in enumerate(conns)))
    for c in conns:
        c.close()
    return out


class SipServers(Servers):
    """The API and one worker with the SIP provider aimed at SIPp."""

    def __init__(self, setup: Setup, sip: dict[str, object]) -> None:
        super().__init__(setup)
        self.sip = sip

    def api_env(self) -> dict[str, str]:
        env = self.setup.env()
        env["OPENCALLER_PROVIDER"] = "sip"
        env["OPENCALLER_SIP"] = orjson.dumps(self.sip).decode()
        env["OPENCALLER_DISPATCH_CONCURRENCY"] = "2000"
        return env


def parse_invites(log: Path) -> list[tuple[str, str, str, float]]:
    rows = []
    for line in log.read_text(errors="replace").splitlines():
        m = LOG_LINE.search(line)
        if m:
            stamp = datetime.datetime.fromisoformat(m.group(4).replace("  ", " "))
            rows.append((m.group(1), m.group(2), m.group(3), stamp.timestamp()))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="initCalls per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument(
        "--pg",
        default=os.environ.get(
            "OPENCALLER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    calls = int(args.rate * args.seconds)
    work = Path(tempfile.mkdtemp(prefix="opencaller-sip-flash-"))
    print("command:", shlex.join(["python", "-m", "bench.sip_flash", *sys.argv[1:]]))
    print(f"work dir: {work}")

    sip_port = free_udp_port()
    sipp_argv = [
        "sipp", "-sf", str(SCENARIO), "-i", HOST, "-p", str(sip_port),
        "-mi", HOST, "-mp", str(free_udp_port()), "-m", str(calls), "-nostdin",
        "-buff_size", "8388608", "-max_socket", "4096",
        "-t", "t1" if args.transport == "tcp" else "u1",
        "-trace_logs", "-log_file", str(work / "sipp_logs.log"),
        "-trace_err", "-error_file", str(work / "sipp_err.log"),
        "-trace_screen", "-screen_file", str(work / "sipp_screen.log"),
    ]  # fmt: skip
    sipp = subprocess.Popen(
        sipp_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work
    )
    sip = {
        "bind_ip": HOST,
        "local_ip": HOST,
        "port": 0,
        "caller_ids": {"prefixes": ["7900555"]},
        "trunks": [
            {
                "name": "sipp",
                "host": HOST,
                "port": sip_port,
                "transport": args.transport,
                # The driver paces the calls; the trunk's limiter must not (it keeps every
                # 1-second window at or under cps, so cps = rate would give rate / 1.05).
                "cps": args.rate * 2,
                "max_in_flight": 4000,
                "ring_hold_s": 0.0,
                "progress_timeout_s": 15.0,
            }
        ],
    }
    db_url = create_pg(args.pg)
    servers: SipServers | None = None
    try:
        from opencaller.storage.db import migrate

        migrate(db_url)
        sid, key = asyncio.run(customer(db_url))
        servers = SipServers(Setup("pg", db_url, args.redis, 1, work), sip)
        servers.start()
        driven = asyncio.run(drive(servers.port, sid, key, args.rate, calls))
        statuses = asyncio.run(final_statuses(servers.port, sid, key, driven.ids))
        try:
            sipp.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sipp.kill()
            sipp.wait()
    finally:
        if servers is not None:
            servers.stop()
        if sipp.poll() is None:
            sipp.kill()
        drop_pg(db_url)

    return report(args, calls, driven, statuses, parse_invites(work / "sipp_logs.log"), work)


def report(
    args: argparse.Namespace,
    calls: int,
    driven: Driven,
    statuses: dict[int, int],
    invites: list[tuple[str, str, str, float]],
    work: Path,
) -> int:
    per_phone: dict[str, int] = {}
    for _, _, to, _ in invites:
        per_phone[to] = per_phone.get(to, 0) + 1
    wrong = [
        (f, p, t)
        for f, p, t, _ in invites
        if not (f == p and f.startswith("7900555") and f[-4:] == driven.codes.get(t))
    ]
    lost = [p for p in driven.codes if p not in per_phone]
    duplicated = [p for p, n in per_phone.items() if n > 1]
    delays = [at - driven.answered_at[t] for _, _, t, at in invites if t in driven.answered_at]
    stamps = sorted(at for *_, at in invites)
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    screen = (work / "sipp_screen.log").read_text(errors="replace")
    failed = re.search(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", screen)
    reached = sum(1 for s in statuses.values() if s == 1)
    print(
        "| transport | offered | accepted | INVITEs at SIPp | calls/s at SIPp | SIPp failed |"
        " HTTP answer -> INVITE p50 / p99 ms | wrong caller IDs | lost | duplicated |"
        " call_status 1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.transport} | {calls} at {args.rate:.0f}/s | {len(driven.codes)} |"
        f" {len(invites)} | {len(stamps) / span:.0f} | {failed.group(1) if failed else '?'} |"
        f" {percentile(delays, 50) * 1000:.1f} / {percentile(delays, 99) * 1000:.1f} |"
        f" {len(wrong)} | {len(lost)} | {len(duplicated)} | {reached} |"
    )
    print(
        f"(initCalls sent over {driven.took_s:.1f} s; {driven.late_starts} started late;"
        f" {driven.refused} refused)"
    )
    ok = not wrong and not lost and not duplicated and reached == len(driven.codes) == calls
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
