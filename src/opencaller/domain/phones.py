"""Phone numbers, codes and ids as the wire carries them.

A phone number, a code and an id are ASCII digits and nothing else. ``str.isdigit`` and the regex
``\\d`` also accept Arabic-Indic, Devanagari, full-width, mathematical and superscript digits,
and ``int()`` converts most of them, so one subscriber could be written in dozens of ways and
dodge every per-number limit; nothing here uses them.
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache

import phonenumbers

# What people type around the digits of a number; a "+" decoded from a query string is a space.
_PUNCTUATION = re.compile(r"[ \t+\-()]+")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_MAX_PHONE_CHARS = 64  # longer text is not a phone number; don't scan it
_MAX_ID_DIGITS = 18  # fits a signed 64-bit id column


def is_ascii_digits(text: str) -> bool:
    """``"0123"`` yes; ``""``, ``"١٢"``, ``"²"``, ``"１"`` no."""
    return _ASCII_DIGITS.fullmatch(text) is not None


def as_id(raw: object) -> int | None:
    """An id as clients send it (``service_id``, ``uid``): a JSON integer or a string of
    ASCII digits, else None. ``int()`` alone would turn ``"١٢"`` into 12 and raise on
    ``"²"``."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw < 10**_MAX_ID_DIGITS else None
    if not isinstance(raw, str):
        return None
    s = raw.strip(" \t\r\n")
    if not 1 <= len(s) <= _MAX_ID_DIGITS or not is_ascii_digits(s):
        return None
    return int(s)


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


def mask(phone: str) -> str:
    """``79001231010`` -> ``7900***1010``: first 4 and last 4 digits, the middle hidden.

    For numbers shorter than 9 digits only the last 4 stay, so nothing is shown twice."""
    if len(phone) >= 9:
        return f"{phone[:4]}***{phone[-4:]}"
    return f"***{phone[-4:]}"


def new_code() -> str:
    """A random code 0000-9999 (leading zeros kept; the wire always carries 4 characters)."""
    return f"{secrets.randbelow(10_000):04d}"


def parse_code(raw: object) -> str | None:
    """Accept an integer 0-9999 or a string of 1-4 ASCII digits and left-pad it; None if it
    is not a code."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        if not raw.is_integer():
            return None
        raw = int(raw)
    if isinstance(raw, int):
        return f"{raw:04d}" if 0 <= raw <= 9999 else None
    if not isinstance(raw, str):
        return None
    text = raw.strip(" \t\r\n")
    if not 1 <= len(text) <= 4 or not is_ascii_digits(text):
        return None
    return text.zfill(4)
