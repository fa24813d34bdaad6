"""Verification conversion on the statistics page: verified ÷ initiated, per day, service,
channel, country and operator. The figures are read by domain/conversion.py; here they are
labelled, and number blocks are told apart by operator."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain import reports
from ..domain.conversion import Conversion, conversion
from ..numbering import InvalidPhoneNumber
from . import fmt
from .web import Ctx

__all__ = ["Conversion", "VerificationStats", "load"]


@dataclass(frozen=True, slots=True)
class VerificationStats:
    total: Conversion
    by_day: list[Conversion]  # newest first, days without authorizations left out
    by_service: list[Conversion]
    by_channel: list[Conversion]
    by_country: list[Conversion]
    by_operator: list[Conversion]


async def _by_operator(ctx: Ctx, blocks: list[Conversion]) -> list[Conversion]:
    merged: dict[str, tuple[int, int]] = {}
    for block in blocks:
        sample = block.label.ljust(11, "0") if block.label.startswith("7") else block.label
        try:
            info = await ctx.rt.directory.lookup_e164(sample)
            name = info.operator or info.provider or ctx.t("Unknown")
        except InvalidPhoneNumber:
            name = ctx.t("Unknown")
        initiated, verified = merged.get(name, (0, 0))
        merged[name] = (initiated + block.initiated, verified + block.verified)
    out = [Conversion(name, 0, i, v) for name, (i, v) in merged.items()]
    return sorted(out, key=lambda c: -c.initiated)


async def load(ctx: Ctx, since: float, until: float, service_id: int | None) -> VerificationStats:
    """Everything the page's conversion section shows, for the signed-in account."""
    async with ctx.rt.db.read() as conn:
        g = await conversion(
            conn, ctx.rt.db.sqlite, since, until, account_id=ctx.me.id, service_id=service_id
        )
    days = g.by_day
    by_day = [
        Conversion(fmt.day(int(d.label) * reports.DAY_S), int(d.label), d.initiated, d.verified)
        for d in sorted(days, key=lambda d: -int(d.label))
    ]
    total = Conversion(
        ctx.t("Total"),
        0,
        sum(d.initiated for d in days),
        sum(d.verified for d in days),
    )
    return VerificationStats(
        total=total,
        by_day=by_day,
        by_service=g.by_service,
        by_channel=g.by_channel,
        by_country=g.by_country,
        by_operator=await _by_operator(ctx, g.by_block),
    )
