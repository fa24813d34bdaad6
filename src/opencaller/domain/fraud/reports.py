"""What the dashboards show: refused attempts, blocks, and conversion by channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from ...storage.database import Database
from ...storage.fraud_tables import fraud_attempts, fraud_blocks
from .counters import CounterStore
from .routing import conversion
from .signals import service_scope

fa = fraud_attempts.c
fb = fraud_blocks.c


@dataclass(frozen=True, slots=True)
class ChannelRate:
    operator: str
    channel: str
    calls: int
    codes: int

    @property
    def conversion(self) -> float:
        return conversion((self.calls, self.codes))


async def attempts(
    db: Database, *, service_ids: list[int] | None, since: float, limit: int = 200
) -> list[Any]:
    """Refused attempts, newest first: of these services, or of every service (None)."""
    q = select(fraud_attempts).where(fa.created_at >= since)
    if service_ids is not None:
        q = q.where(fa.service_id.in_(service_ids))
    async with db.read() as conn:
        return list((await conn.execute(q.order_by(fa.id.desc()).limit(limit))).all())


async def reasons(db: Database, *, service_ids: list[int], since: float) -> list[tuple[str, int]]:
    """Refusals counted by rule (the statistics page)."""
    q = (
        select(fa.rule, func.count())
        .where(fa.service_id.in_(service_ids), fa.created_at >= since)
        .group_by(fa.rule)
        .order_by(func.count().desc())
    )
    async with db.read() as conn:
        return [(str(r[0]), int(r[1])) for r in (await conn.execute(q)).all()]


async def blocks(db: Database, *, now: float, limit: int = 200) -> list[Any]:
    """Blocks still in force (lifted ones included, marked), newest first."""
    q = select(fraud_blocks).where(fb.until > now).order_by(fb.id.desc()).limit(limit)
    async with db.read() as conn:
        return list((await conn.execute(q)).all())


async def channel_rates(
    store: CounterStore, service_id: int, *, now: float, window_s: float
) -> list[ChannelRate]:
    """Calls and codes per destination operator and channel over the last one to two windows."""
    bucket = int(now // window_s)
    prefix = f"{service_scope(service_id)}:channel:"
    found = await store.scan(prefix, [bucket - 1, bucket])
    rates = []
    for key, (calls, codes) in found.items():
        operator, _, channel = key[len(prefix) :].rpartition(":")
        rates.append(ChannelRate(operator, channel, calls, codes))
    return sorted(rates, key=lambda r: (r.operator, r.channel))
