"""Formatting and parsing of what people read and type: money, times, lists."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import phonenumbers

from ..domain.money import MONEY_SCALE

# ASCII addresses only, without the characters that mean something in HTML or headers
# (``<>"\``, spaces, controls); international domains go in their xn-- form.
EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$"
)


def rub_plain(units: int) -> str:
    """``3000`` -> ``0.30``: two decimals, or four when the amount needs them (exact)."""
    d = Decimal(units) / MONEY_SCALE
    return f"{d:.2f}" if units % 100 == 0 else f"{d:.4f}"


def rub(units: int) -> str:
    sign = "−" if units < 0 else ""
    whole, _, frac = rub_plain(abs(units)).partition(".")
    grouped = f"{int(whole):,}".replace(",", "\u202f")
    return f"{sign}{grouped}.{frac}\u00a0₽"


def parse_rub(text: str) -> int | None:
    """Roubles typed by a person (``100``, ``-5,50``) to units; None if it is not a number."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "").replace(",", ".")
    try:
        d = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not d.is_finite() or abs(d) > 10**9:
        return None
    return int((d * MONEY_SCALE).to_integral_value())


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def parse_day(text: str | None) -> float | None:
    """``YYYY-MM-DD`` (UTC midnight) to Unix seconds; None for empty or malformed input."""
    if not text:
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def split_list(text: str) -> list[str]:
    return [p for p in re.split(r"[\s,;]+", text.strip()) if p]


def parse_countries(text: str) -> tuple[list[str], list[str]]:
    """ISO codes from free text: (valid codes, rejected entries)."""
    good: list[str] = []
    bad: list[str] = []
    for item in split_list(text.upper()):
        if item in phonenumbers.SUPPORTED_REGIONS:
            if item not in good:
                good.append(item)
        else:
            bad.append(item)
    return good, bad


def parse_networks(text: str) -> tuple[list[str], list[str]]:
    good: list[str] = []
    bad: list[str] = []
    for item in split_list(text):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            bad.append(item)
        else:
            good.append(item)
    return good, bad


def parse_int(text: str | None, *, low: int, high: int) -> int | None:
    s = (text or "").strip()
    # ASCII only: str.isdigit takes "²", which int() refuses; 18 digits keep int() cheap.
    if not (s.isascii() and s.isdigit()) or len(s) > 18:
        return None
    value = int(s)
    return value if low <= value <= high else None


def safe_next(target: str | None, default: str) -> str:
    """Only same-site paths, so ``?next=`` cannot send anyone elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def outcome(value: str | None) -> str:
    """A call outcome as a phrase (``no_answer`` -> ``no answer``), translated by the page."""
    return value.replace("_", " ") if value else ""
