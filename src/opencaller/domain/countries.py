"""Which country a number belongs to (decides tariffs, geography rules and voice)."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers


# Numbers are client input and mostly new: the cache serves the few looked up again soon
# (getInfo polling, repeats). About 140 bytes an entry: 8,192 entries hold ~1 MB.
@lru_cache(maxsize=8_192)
def country_of(phone: str) -> str | None:
    """ISO 3166-1 alpha-2 of an E.164 number given as digits, or None if it is no number."""
    if not 8 <= len(phone) <= 15:
        return None
    try:
        parsed = phonenumbers.parse("+" + phone)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "ZZ" else None
