"""Money on the wire is a JSON number of roubles; inside it is an integer of 1/10000 rouble."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from ..storage.tables import MONEY_SCALE as MONEY_SCALE  # 1/10000 rouble


def to_units(rub: float | str | Decimal) -> int:
    d = Decimal(str(rub)) * MONEY_SCALE
    return int(d.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_rub(units: int) -> float:
    # Round to 4 places so the JSON shows 0.3, not 0.30000000000000004.
    return round(units / MONEY_SCALE, 4)
