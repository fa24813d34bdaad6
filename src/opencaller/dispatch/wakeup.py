"""Waking dispatchers in other processes when a call is queued (PostgreSQL LISTEN/NOTIFY).

API nodes that do not dispatch send ``NOTIFY`` on a dedicated connection after the
authorization has committed; workers ``LISTEN`` and claim at once. Sends are coalesced — a
burst of initCalls costs one NOTIFY every few milliseconds, not one per request — and nothing
waits for them. A lost notification only costs the worker's polling interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from ..storage.db import DbTimeouts, asyncpg_dsn
from ..storage.outage import describe

CHANNEL = "opencaller_dispatch"
log = logging.getLogger("opencaller.dispatch")


def _connect_kwargs(timeouts: DbTimeouts | None) -> dict[str, Any]:
    t = timeouts or DbTimeouts()
    out: dict[str, Any] = {}
    if t.connect_s is not None:
        out["timeout"] = t.connect_s
    if t.statement_s is not None:
        out["command_timeout"] = t.statement_s
    return out


class Notifier:
    """Coalescing NOTIFY sender; ``poke`` never blocks the request that calls it."""

    def __init__(
        self, url: str, *, min_interval_s: float = 0.005, timeouts: DbTimeouts | None = None
    ) -> None:
        # The same URL as the engines (several hosts and target_session_attrs included), so
        # after a failover NOTIFY reaches the primary the workers listen on.
        self.dsn = asyncpg_dsn(url)
        self.connect_kwargs = _connect_kwargs(timeouts)
        # Under load a NOTIFY per round trip is hundreds a second, each waking the workers for
        # a small claim; one per few milliseconds wakes them as fast and lets claims fill up.
        self.min_interval_s = min_interval_s
        self._conn: Any = None
        self._pending = False
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._pending = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._pending:
            self._pending = False
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn, **self.connect_kwargs)
                await self._conn.execute(f"NOTIFY {CHANNEL}")
                if self._pending:
                    await asyncio.sleep(self.min_interval_s)
            except Exception as exc:
                log.warning("NOTIFY failed; workers fall back to polling: %s", describe(exc))
                if self._conn is not None:
                    self._conn.terminate()
                self._conn = None
                return

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 2.0)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()


class Listener:
    """Calls ``wake`` for every NOTIFY on the channel; reconnects if the connection drops."""

    def __init__(
        self,
        url: str,
        wake: Callable[[], None],
        *,
        retry_s: float = 1.0,
        timeouts: DbTimeouts | None = None,
    ) -> None:
        self.dsn = asyncpg_dsn(url)
        self.connect_kwargs = _connect_kwargs(timeouts)
        self.wake = wake
        self.retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatch-listen")

    def _on_notify(self, *_args: object) -> None:
        self.wake()

    async def _run(self) -> None:
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.dsn, **self.connect_kwargs)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self.ready.set()
                self.wake()  # anything queued while we were not listening
                await lost.wait()
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
                raise
            except Exception as exc:
                log.warning("LISTEN connection failed; retrying: %s", describe(exc))
                if conn is not None:
                    conn.terminate()
            self.ready.clear()
            await asyncio.sleep(self.retry_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
