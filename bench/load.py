"""An open-loop load generator: requests start on a fixed schedule, and each latency counts
from the scheduled start, so a slow server cannot hide behind a slow client (no coordinated
omission). A minimal keep-alive HTTP/1.1 client keeps its own CPU use small."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        r, w = await asyncio.open_connection(host, port)
        return cls(r, w)

    async def get(self, host: str, path: str) -> bytes:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Paced:
    latencies: list[float] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)
    late_starts: int = 0


async def paced(
    host: str,
    port: int,
    path_of: Callable[[int], str],
    *,
    rate: float,
    seconds: float,
    connections: int = 64,
) -> Paced:
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Conn.open(host, port))
    out = Paced()
    total = int(rate * seconds)
    t0 = time.perf_counter() + 0.1

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        try:
            body = await conn.get(host, path_of(i))
        finally:
            pool.put_nowait(conn)
        out.latencies.append(time.perf_counter() - due)
        out.bodies.append(orjson.loads(body))

    tasks = []
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            out.late_starts += 1
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]
