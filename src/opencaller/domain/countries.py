"""Which country a number belongs to (decides tariffs, geography rules and voice)."""

from __future__ import annotations

from ..phone_text import known_number


def country_of(phone: str) -> str | None:
    """ISO 3166-1 alpha-2 of an E.164 number given as digits, or None if it is no number."""
    if not 8 <= len(phone) <= 15:
        return None
    return known_number(phone)[1]
