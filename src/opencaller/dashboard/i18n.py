"""Russian and English. Pages are written with English phrases; RU maps each to Russian.

A phrase missing from RU is shown in English (tests/test_dashboard.py checks that every phrase
used by the templates has a translation).
"""

from __future__ import annotations

from typing import Any

from .ru import RU

COOKIE = "oc_lang"
LANGUAGES = ("ru", "en")
DEFAULT = "ru"


def pick(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT


def translate(lang: str, text: str, **values: Any) -> str:
    phrase = RU.get(text, text) if lang == "ru" else text
    return phrase.format(**values) if values else phrase


def action(lang: str, text: str) -> str:
    """Activity log rows are stored as ``"what: detail"``; only ``what`` is translated."""
    what, sep, detail = text.partition(": ")
    return translate(lang, what) + sep + detail
