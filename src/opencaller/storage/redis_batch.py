"""Lua scripts called by many requests at once, sent to Redis together.

Every API request runs at least one script (the per-second limit). Sent one by one, each
costs a connection checkout, a write and a read; under load, requests reach that point in
bursts, so the scripts called during one event-loop iteration go out as one pipeline (no
MULTI: each script is atomic on its own) and each caller gets its own reply.

Redis keeps no scripts across a restart (nor a failover to a replica): the first call that
finds its script missing runs the ``on_scripts_lost`` hooks before loading it again, so the
limits learn that Redis may have lost data (storage/redis_limits.py) before any script runs
against it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class ScriptBatcher:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._pending: list[tuple[Script, list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_scripts_lost: list[Callable[[], Awaitable[None]]] = []

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, [script.sha, len(keys), *keys, *args], future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Script, list[Any], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._execute([command for _, command, _ in batch])
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:  # first use, or Redis restarted: load the scripts and go again
                for hook in self.on_scripts_lost:
                    await hook()
                for script in {batch[i][0].sha: batch[i][0] for i in missing}.values():
                    await self.client.script_load(script.source)
                again = await self._execute([batch[i][1] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the caller went away
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, commands: list[list[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command("EVALSHA", *command)
        return list(await pipe.execute(raise_on_error=False))
