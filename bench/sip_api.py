"""Flash calls per second with the whole service in the loop.

HTTP initCall (paced) -> API -> database -> dispatcher -> SIP trunk -> SIPp UAS that rings and
takes the CANCEL. Reports the calls/s SIPp saw, failed calls, whether every INVITE carried a
caller number ending in the requested code (From and P-Asserted-Identity), and the time from
the initCall answer to the final call_status.

    python bench/sip_api.py --calls 3000 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "sipp" / "uas_ring_cancel.xml"
LOG_LINE = re.compile(r"from_num=(\d+) pai_num=(\d+) to_num=(\d+)")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def opencaller(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "opencaller", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


async def drive(
    url: str, params: dict[str, str], calls: int, rate: float
) -> tuple[dict[str, str], float]:
    """Send ``calls`` initCalls at ``rate`` per second; phone -> code of each accepted one."""
    sent: dict[str, str] = {}
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        start = time.monotonic()

        async def one(i: int) -> None:
            phone, code = f"7916{i:07d}", f"{(i * 37) % 10000:04d}"
            try:
                r = await client.get(
                    "/v1.0/initCall", params={**params, "phone": phone, "code": code}
                )
                body = r.json()
            except httpx.HTTPError as exc:
                print("request failed:", repr(exc), file=sys.stderr)
                return
            if body.get("status"):
                sent[phone] = code
            else:
                print("refused:", body, file=sys.stderr)

        tasks = []
        for i in range(calls):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        return sent, time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=200.0, help="initCalls per second")
    args = ap.parse_args()
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="opencaller_sip_api_"))
    sip_port, http_port = free_port(socket.SOCK_DGRAM), free_port()
    cfg = work / "opencaller.toml"
    cfg.write_text(
        f'database_url = "sqlite:///{work}/db.sqlite"\n'
        f"port = {http_port}\n"
        'provider = "sip"\n'
        "dispatch_concurrency = 1000\n"
        'log_level = "WARNING"\n'
        "[sip]\n"
        'bind_ip = "127.0.0.1"\nlocal_ip = "127.0.0.1"\nport = 0\n'
        'caller_ids = { prefixes = ["7900555"] }\n'
        "[[sip.trunks]]\n"
        f'name = "main"\nhost = "127.0.0.1"\nport = {sip_port}\n'
        "cps = 2000\nmax_in_flight = 2000\nring_hold_s = 0.0\nprogress_timeout_s = 15.0\n"
    )
    env = {**os.environ, "OPENCALLER_CONFIG": str(cfg)}
    opencaller("account", "create", "bench@example.com", "--balance", "100000", env=env)
    created = opencaller("service", "create", "bench@example.com", "SIP bench", env=env)
    sid = re.search(r"service_id:\s+(\d+)", created)
    key = re.search(r"key:\s+(\S+)", created)
    assert sid and key
    opencaller("service", "set", sid.group(1), "--rps-limit", "100000", env=env)

    sipp = subprocess.Popen(
        ["sipp", "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(sip_port),
         "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)),
         "-m", str(args.calls), "-nostdin", "-buff_size", "4194304",
         "-trace_logs", "-log_file", str(work / "sipp_logs.log"),
         "-trace_err", "-error_file", str(work / "sipp_err.log"),
         "-trace_screen", "-screen_file", str(work / "sipp_screen.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "opencaller", "serve", "--config", str(cfg)],
        stdout=(work / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).json().get("status"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        params = {"service_id": sid.group(1), "key": key.group(1)}
        sent, took = asyncio.run(drive(url, params, args.calls, args.rate))
        try:
            sipp.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sipp.kill()
        finals = asyncio.run(final_statuses(url, params, len(sent)))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if sipp.poll() is None:
            sipp.kill()

    logged = [LOG_LINE.search(line) for line in (work / "sipp_logs.log").read_text().splitlines()]
    invites = [m.groups() for m in logged if m]
    wrong = [
        (f, p, t)
        for f, p, t in invites
        if not (f == p and f.startswith("7900555") and f[-4:] == sent.get(t))
    ]
    dialled, delays = dispatch_times(work / "db.sqlite")
    screen = (work / "sipp_screen.log").read_text()
    failed = re.search(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", screen)
    successful = re.search(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", screen)
    span = (max(dialled) - min(dialled)) if len(dialled) > 1 else float("nan")
    print(
        "| calls | offered | accepted | SIPp INVITEs | SIPp ok | SIPp failed |"
        " calls/s dialled | dispatch delay p50 / p99 ms | wrong caller IDs | call_status 1 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.calls} | {args.rate:.0f}/s | {len(sent)} | {len(invites)} |"
        f" {successful.group(1) if successful else '?'} |"
        f" {failed.group(1) if failed else '?'} |"
        f" {len(dialled) / span:.0f} |"
        f" {pct(delays, 0.5) * 1000:.1f} / {pct(delays, 0.99) * 1000:.1f} |"
        f" {len(wrong)} | {finals} |"
    )
    print(f"(initCall requests took {took:.1f} s to send)")
    print(
        f"\ncommand: python bench/sip_api.py --calls {args.calls} --rate {args.rate:.0f}"
        f"   (work files: {work})"
    )
    ok = len(invites) == args.calls and not wrong and finals == args.calls
    return 0 if ok else 1


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def dispatch_times(db: Path) -> tuple[list[float], list[float]]:
    """When each call was dialled, and how long after its initCall was stored."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT dialed_at, dialed_at - created_at FROM authorizations"
            " WHERE dialed_at IS NOT NULL"
        ).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


async def final_statuses(url: str, params: dict[str, str], n: int) -> int:
    """How many of the ids 1..n reached call_status 1 (waits for pending ones)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        sem = asyncio.Semaphore(50)

        async def one(uid: int) -> int:
            async with sem:
                for _ in range(100):
                    body = (
                        await client.get("/v1.0/getInfo", params={**params, "uid": str(uid)})
                    ).json()
                    if body.get("call_status", -1) != -1:
                        return 1 if body["call_status"] == 1 else 0
                    await asyncio.sleep(0.2)
                return 0

        return sum(await asyncio.gather(*(one(uid) for uid in range(1, n + 1))))


if __name__ == "__main__":
    sys.exit(main())
