"""Phone numbers and codes as the wire carries them."""

from __future__ import annotations

import re
import secrets

_NON_DIGITS = re.compile(r"\D+")


def digits(raw: object) -> str:
    """Strip every non-digit: ``+7 (900) 000-00-01``, ``%2B7…`` decoded, numbers as JSON ints."""
    if raw is None or isinstance(raw, bool):
        return ""
    if isinstance(raw, float):
        raw = int(raw) if raw.is_integer() else raw
    return _NON_DIGITS.sub("", str(raw))


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
    """Accept an int or a string of 1-4 digits and left-pad it; None if it is not a code."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    text = str(raw).strip()
    if not text.isdigit() or not 1 <= len(text) <= 4:
        return None
    return text.zfill(4)
