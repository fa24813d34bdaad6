"""Phone numbers as text, the rules every layer shares (the settings check test numbers with
them, the wire and the domain key limits on them).

A phone number is ASCII digits and nothing else. ``str.isdigit`` and the regex ``\\d`` also
accept Arabic-Indic, Devanagari, full-width, mathematical and superscript digits, and ``int()``
converts most of them, so one subscriber could be written in dozens of ways and dodge every
per-number limit; nothing here uses them.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

# What people type around the digits of a number; a "+" decoded from a query string is a space.
_PUNCTUATION = re.compile(r"[ \t+\-()]+")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_MAX_PHONE_CHARS = 64  # longer text is not a phone number; don't scan it


def is_ascii_digits(text: str) -> bool:
    """``"0123"`` yes; ``""``, ``"١٢"``, ``"²"``, ``"１"`` no."""
    return _ASCII_DIGITS.fullmatch(text) is not None


def digits(raw: object) -> str:
    """The characters of a phone number wherever one enters: ASCII digits only.

    ``+7 (900) 000-00-01``, ``%2B7…`` decoded, a JSON integer -> ``79000000001``. Only spaces,
    tabs, ``+``, ``-``, ``(`` and ``)`` are removed; anything else (letters, other digits,
    control characters, negative or fractional numbers, arrays, objects) gives ``""``.
    """
    if isinstance(raw, bool) or raw is None:
        return ""
    if isinstance(raw, float):
        if not raw.is_integer() or raw < 0 or raw >= 1e16:
            return ""
        raw = int(raw)
    if isinstance(raw, int):
        return str(raw) if 0 <= raw < 10**16 else ""
    if not isinstance(raw, str) or len(raw) > _MAX_PHONE_CHARS:
        return ""
    text = _PUNCTUATION.sub("", raw.strip(" \t\r\n"))
    return text if is_ascii_digits(text) else ""


def e164(raw: object) -> str:
    """The one form of a phone number every per-number limit is keyed on: :func:`digits`,
    then, for a number libphonenumber knows as valid, its E.164 digits. Without this step
    ``789161234567`` (a national "8" kept after the country code) would be a second spelling
    of ``79161234567``, and ``4402070313000`` of ``442070313000``. "" if not a number."""
    found = digits(raw)
    if not 8 <= len(found) <= 16:
        return found
    return known_number(found)[0]  # as it is when invalid: the caller answers error 3


# Numbers are client input and mostly new: the cache serves the ones seen again soon (the
# country of the number just normalised, getInfo polling, repeats). About 200 bytes an entry.
@lru_cache(maxsize=8_192)
def known_number(found: str) -> tuple[str, str | None]:
    """``(E.164 digits, ISO region)`` of a number given as digits with its country code; the
    digits unchanged and no region when libphonenumber does not know it as valid. One parse
    serves both the normalisation and the country of an initCall."""
    try:
        number = phonenumbers.parse("+" + found)
    except phonenumbers.NumberParseException:
        return found, None
    if not phonenumbers.is_valid_number(number):
        return found, None
    canonical = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    region = phonenumbers.region_code_for_number(number)
    return canonical, (region if region and region != "ZZ" else None)
