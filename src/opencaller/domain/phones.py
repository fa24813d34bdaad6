"""Phone numbers, codes and ids as the wire carries them.

A phone number, a code and an id are ASCII digits and nothing else. ``str.isdigit`` and the regex
``\\d`` also accept Arabic-Indic, Devanagari, full-width, mathematical and superscript digits,
and ``int()`` converts most of them, so one subscriber could be written in dozens of ways and
dodge every per-number limit; nothing here uses them.
"""

from __future__ import annotations

import secrets

from ..phone_text import is_ascii_digits

_MAX_ID_DIGITS = 18  # fits a signed 64-bit id column


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
