"""`opencaller worker`: a process that only places calls (no HTTP).

It claims queued authorizations from the database, wakes on NOTIFY (PostgreSQL) or polls, and
on SIGTERM/SIGINT stops claiming and lets calls in progress finish (Settings.drain_s). A
worker killed outright loses nothing: its queued rows stay queued, and its calls in progress
are finalised by another worker once their lease ends, never dialled twice.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from .config import Settings
from .runtime import Runtime

log = logging.getLogger("opencaller.worker")


async def run_worker(settings: Settings, *, metrics_port: int | None = None) -> None:
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host)
    rt = Runtime(settings, dispatch=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await rt.start()
    assert rt.dispatcher is not None
    log.info("worker started", extra={"worker": rt.dispatcher.name})
    try:
        await stop.wait()
        log.info(
            "worker draining",
            extra={"worker": rt.dispatcher.name, "inflight": rt.dispatcher.inflight},
        )
    finally:
        await rt.stop()
    log.info("worker stopped", extra={"worker": rt.dispatcher.name})


def main(settings: Settings, *, metrics_port: int | None = None) -> None:
    try:
        import uvloop

        uvloop.run(run_worker(settings, metrics_port=metrics_port))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(run_worker(settings, metrics_port=metrics_port))
