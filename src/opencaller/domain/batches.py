"""Writes that arrive while one is in flight are written together by the next one.

A database groups commits the same way: while a write runs, the requests behind it queue;
when it ends, the next write takes the whole queue. A request alone is written alone, so
under light load nothing waits for company. How a batch is written is the operation's own
(domain/new_authorizations.py); this module only groups, and falls back.

A batch never changes an answer: ``together`` returns each request's own outcome. When it
fails as a whole (an error it did not expect), the batch is logged, counted in
``opencaller_write_batch_failures_total`` and written again one by one, so that each request
meets its own error or none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..observability import metrics

log = logging.getLogger(__name__)

R = TypeVar("R")
O = TypeVar("O")  # noqa: E741


class Batcher(Generic[R, O]):
    def __init__(
        self,
        operation: str,
        *,
        together: Callable[[list[R]], Awaitable[list[O]]],
        alone: Callable[[R], Awaitable[O]],
    ) -> None:
        self.operation = operation
        self._together = together
        self._alone = alone
        self._pending: list[tuple[R, asyncio.Future[O]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, request: R) -> O:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[O] = loop.create_future()
        self._pending.append((request, future))
        if self._task is None:
            self._task = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        batch: list[tuple[R, asyncio.Future[O]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                metrics.WRITE_BATCH_SIZE.labels(self.operation).observe(len(batch))
                if len(batch) == 1:
                    await self._one_by_one(batch)
                else:
                    await self._write_together(batch)
        finally:
            self._task = None
            for _, future in batch:  # only if this task was cancelled mid-batch
                if not future.done():
                    future.set_exception(RuntimeError("the write was cancelled"))

    async def _write_together(self, batch: list[tuple[R, asyncio.Future[O]]]) -> None:
        try:
            outcomes = await self._together([r for r, _ in batch])
        except Exception as exc:
            metrics.WRITE_BATCH_FAILURES.labels(self.operation).inc()
            log.warning(
                "batched write failed, writing one by one: %s: %s",
                type(exc).__name__,
                exc,
                extra={"operation": self.operation, "batch": len(batch)},
            )
            await self._one_by_one(batch)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def _one_by_one(self, batch: list[tuple[R, asyncio.Future[O]]]) -> None:
        for request, future in batch:
            try:
                outcome = await self._alone(request)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(outcome)
