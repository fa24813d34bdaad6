"""Refused attempts and blocks in the database: what customers and operators are shown.

Every refusal is one row of ``fraud_attempts`` (never a charge). A rule that trips also
records its block (key, until); an operator lifts a block, and the key is then not refused
again before that time. Nodes learn about lifted blocks within LIFTED_CACHE_S (at once on
the node where the operator lifted it)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ...storage.database import Database
from ...storage.fraud_tables import fraud_attempts, fraud_blocks
from .signals import Attempt

LIFTED_CACHE_S = 2.0
# Refusals are kept this long for the dashboards; a node deletes older ones (and blocks that
# ended as long ago) every PRUNE_EVERY refusals it records, so an attack cannot grow the
# tables without bound.
KEEP_S = 30 * 86_400.0
PRUNE_EVERY = 1000
# Blocks this node has written lately (key, until): written once, not once per refusal.
MAX_KNOWN_BLOCKS = 10_000

b = fraud_blocks.c
fa = fraud_attempts.c


@dataclass(frozen=True, slots=True)
class Refusal:
    code: int  # 64, or 9 for geography
    rule: str
    key: str
    reason: str
    retry_after: int | None = None
    until: float | None = None  # the block's end, for temporary refusals


class Journal:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lifted: dict[str, float] = {}
        self._lifted_read = float("-inf")
        self._known: LRUCache[tuple[str, float], bool] = LRUCache(maxsize=MAX_KNOWN_BLOCKS)
        self._recorded = 0

    async def record(self, attempt: Attempt, refusal: Refusal, now: float) -> None:
        async with self.db.write() as conn:
            await conn.execute(insert(fraud_attempts).values(**_attempt_row(attempt, refusal, now)))
            if refusal.until is not None and (refusal.key, refusal.until) not in self._known:
                await conn.execute(self._block(attempt, refusal, now))
            self._recorded += 1
            if self._recorded % PRUNE_EVERY == 0:
                await conn.execute(delete(fraud_attempts).where(fa.created_at < now - KEEP_S))
                await conn.execute(delete(fraud_blocks).where(b.until < now - KEEP_S))
        if refusal.until is not None:
            self._known[(refusal.key, refusal.until)] = True

    def _block(self, attempt: Attempt, refusal: Refusal, now: float) -> Any:
        ins = sqlite_insert if self.db.sqlite else pg_insert
        scope = refusal.key.split(":", 1)[0]
        return (
            ins(fraud_blocks)
            .values(
                rule_key=refusal.key,
                rule=refusal.rule,
                reason=refusal.reason,
                service_id=attempt.service_id if scope != "all" else None,
                until=refusal.until,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[b.rule_key, b.until])
        )

    async def lifted(self, key: str, now: float, service_id: int) -> bool:
        """Whether an operator lifted the block of ``key`` and it has not ended yet. Lifting a
        service's block lifts the same signal installation-wide for that service too."""
        scope, _, rest = key.partition(":")
        twin = f"s{service_id}:{rest}" if scope == "all" else key
        return await self._lifted_until(key, now) or await self._lifted_until(twin, now)

    async def _lifted_until(self, key: str, now: float) -> bool:
        if time.monotonic() - self._lifted_read > LIFTED_CACHE_S:
            q = select(b.rule_key, b.until).where(b.lifted_at.is_not(None), b.until > now)
            async with self.db.read() as conn:
                rows = (await conn.execute(q)).all()
            self._lifted = {str(r.rule_key): float(r.until) for r in rows}
            self._lifted_read = time.monotonic()
        return self._lifted.get(key, float("-inf")) > now

    async def lift(self, block_id: int, *, by: str, now: float) -> bool:
        """Lift a block; False when there is no such block in force."""
        q = (
            update(fraud_blocks)
            .where(b.id == block_id, b.lifted_at.is_(None), b.until > now)
            .values(lifted_at=now, lifted_by=by)
        )
        async with self.db.write() as conn:
            done = (await conn.execute(q)).rowcount > 0
        self._lifted_read = float("-inf")  # this node applies it at once
        return done


def _attempt_row(attempt: Attempt, refusal: Refusal, now: float) -> dict[str, Any]:
    return {
        "service_id": attempt.service_id,
        "account_id": attempt.account_id,
        "phone": attempt.phone,
        "country_iso": attempt.country[:2],
        "operator": attempt.operator[:120],
        "origin": attempt.origin[:64],
        "client": attempt.client,
        "code": refusal.code,
        "rule": refusal.rule,
        "rule_key": refusal.key[:120],
        "reason": refusal.reason[:256],
        "retry_after": refusal.retry_after,
        "created_at": now,
    }
