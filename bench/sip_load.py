"""Provider-level load run: N flash calls at a target rate through SipProvider against a
SIPp UAS on 127.0.0.1, reporting calls/s, failures and INVITE->180 latency.

    PYTHONPATH=src python bench/sip_load.py --calls 5000 --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opencaller.telephony.base import CallKind, CallReport, CallRequest, Outcome
from opencaller.telephony.sip.provider import from_settings

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "sipp" / "uas_ring_cancel.xml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=500.0, help="target calls per second")
    ap.add_argument("--in-flight", type=int, default=2000)
    ap.add_argument("--ring-hold", type=float, default=0.0)
    args = ap.parse_args()

    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="sip_load_"))
    argv = [
        sipp, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-m", str(args.calls), "-nostdin", "-buff_size", "4194304",
        "-trace_err", "-error_file", str(work / "err.log"),
        "-trace_screen", "-screen_file", str(work / "screen.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measured part
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work
    )
    await asyncio.sleep(0.5)
    provider = from_settings(
        {
            "bind_ip": "127.0.0.1",
            "local_ip": "127.0.0.1",
            "port": 0,
            "caller_ids": {"prefixes": ["7900555"]},
            "trunks": [
                {
                    "name": "bench",
                    "host": "127.0.0.1",
                    "port": port,
                    "cps": args.rate,
                    "max_in_flight": args.in_flight,
                    "ring_hold_s": args.ring_hold,
                    "progress_timeout_s": 15,
                }
            ],
        }
    )
    await provider.start()
    t0 = time.monotonic()
    cpu0 = time.process_time()
    reports: list[CallReport] = await asyncio.gather(
        *(
            provider.place_call(CallRequest(i, "79161234567", f"{i % 10000:04d}", CallKind.FLASH))
            for i in range(args.calls)
        )
    )
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    await provider.close()
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = -9
    failed = [r for r in reports if r.outcome is not Outcome.DELIVERED]
    lat = [(r.progress_at - r.started_at) * 1000 for r in reports if r.progress_at is not None]
    print(f"calls            {args.calls}")
    print(f"target rate      {args.rate:.0f} calls/s")
    print(f"achieved rate    {args.calls / wall:.1f} calls/s ({wall:.2f} s wall)")
    print(f"failed           {len(failed)}")
    print(f"INVITE->180 p50  {statistics.median(lat) if lat else float('nan'):.2f} ms")
    print(f"INVITE->180 p99  {pct(lat, 0.99):.2f} ms")
    print(f"our CPU          {cpu:.2f} s ({cpu / args.calls * 1000:.2f} ms/call)")
    print(f"sipp exit code   {rc} (0 = every call completed on the far end)")
    print("reproduce        PYTHONPATH=src python bench/sip_load.py " + " ".join(sys.argv[1:]))
    if failed:
        print("first failures:", [(r.outcome, r.reason) for r in failed[:5]])
    return 0 if not failed and rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
