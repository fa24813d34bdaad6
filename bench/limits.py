"""Cost of the request limits on the hot path: ``python -m bench.limits``.

Drives uvicorn's protocol object directly (no sockets, a trivial ASGI app) with keep-alive
requests, so the difference between two runs is the cost of our code alone:

- protocol: uvicorn's ``HttpToolsProtocol`` against ``BoundedHttpProtocol`` (head size and time);
- middleware: the app alone against the app inside ``RequestLimits`` (body size and time),
  for a GET without a body and a POST with a small JSON body.

Prints microseconds per request (best of several rounds), on uvloop as `serve` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvloop
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from opencaller.wire.limits import RequestLimits
from opencaller.wire.protocol import BoundedHttpProtocol

GET = b"GET /v1.0/getBalance?service_id=1&key=k HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\n\r\n"
BODY = b'{"service_id": 1, "key": "k", "phone": "79000000001"}'
POST = (
    b"POST /v1.0/initCall HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = scope["method"] == "POST"
    while more:  # read the body, as read_args does
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


class Transport(asyncio.Transport):
    def __init__(self, done: asyncio.Event) -> None:
        super().__init__()
        self.done = done

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.done.set()

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def per_request_us(
    protocol_class: type[HttpToolsProtocol], asgi: ASGIApp, request: bytes, n: int
) -> float:
    config = Config(app=asgi, lifespan="off", access_log=False, log_level="warning")
    config.load()
    done = asyncio.Event()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Transport(done))
    started = time.process_time()  # CPU time: other processes on the machine count less
    for _ in range(n):
        done.clear()
        protocol.data_received(request)
        await done.wait()
        await asyncio.sleep(0)  # let the response finish (keep-alive timer, next cycle)
    elapsed = time.process_time() - started
    protocol.connection_lost(None)
    return elapsed / n * 1e6


def measure(
    variants: list[tuple[type[HttpToolsProtocol], ASGIApp]], request: bytes, n: int, rounds: int
) -> list[float]:
    """Best of ``rounds`` per variant, the variants interleaved so load on the machine hits
    them alike."""
    results = [float("inf")] * len(variants)
    for _ in range(rounds):
        for i, (protocol_class, asgi) in enumerate(variants):
            us = uvloop.run(per_request_us(protocol_class, asgi, request, n))
            results[i] = min(results[i], us)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    limited = RequestLimits(app, max_body_bytes=65536, body_timeout_s=10)
    print("| request | plain uvicorn + app | protocol | protocol + middleware | added |")
    print("|---|---|---|---|---|")
    for name, request in (("GET, no body", GET), ("POST, JSON body", POST)):
        variants = [(HttpToolsProtocol, app), (BoundedHttpProtocol, app)]
        variants.append((BoundedHttpProtocol, limited))
        base, proto, full = measure(variants, request, args.requests, args.rounds)
        print(
            f"| {name} | {base:.1f} µs | {proto:.1f} µs | {full:.1f} µs | {full - base:+.1f} µs |"
        )


if __name__ == "__main__":
    main()
