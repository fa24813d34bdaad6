"""Billing a phone lookup (``checkPhone``): its price, its charge and its ledger row.

The lookup itself (standardising the number) is the numbering package's; what it costs is
decided here: the tariff's ``lookup`` price for the number's country, nothing for a test
service or a test number. A balance that does not cover the price takes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage.database import Database
from . import billing

CHANNEL = "lookup"


@dataclass(frozen=True, slots=True)
class LookupBill:
    price: int  # what was taken, in units
    balance: int  # the balance afterwards


async def bill_lookup(
    db: Database,
    account_id: int,
    tariff_id: int | None,
    country_iso: str,
    *,
    free: bool,
    now: float,
) -> LookupBill | None:
    """Charge the lookup; None when the balance does not cover its price."""
    async with db.write() as conn:
        price = 0 if free else await billing.price_of(conn, tariff_id, CHANNEL, country_iso)
        if price <= 0:
            return LookupBill(0, await billing.balance_of(conn, account_id))
        after = await billing.charge(conn, account_id, price, now=now, channel=CHANNEL)
    return None if after is None else LookupBill(price, after)
