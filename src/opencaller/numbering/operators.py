"""Known Russian mobile operators: brand name and mobile network code (MNC, MCC 250).

The registry and MNP files name operators by legal entity ("ПАО \"Вымпел-Коммуникации\"");
checkPhone wants a brand (``provider``) and an ``mnc``. The MNC figures are the assignments
for MCC 250 in the ITU-T E.212 list ("Mobile Network Codes", Annex to ITU Operational
Bulletin) as also listed on Wikipedia's "Mobile network codes in ITU region 2xx"; only
operators whose code is well established are listed, anything else answers ``mnc`` 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Operator:
    brand: str  # what checkPhone calls "provider"
    mnc: int


MTS = Operator("MTS", 1)
MEGAFON = Operator("MegaFon", 2)
YOTA = Operator("Yota", 11)
TELE2 = Operator("Tele2", 20)
WIN_MOBILE = Operator("Win Mobile", 32)
MOTIV = Operator("Motiv", 35)
SBER = Operator("SberMobile", 50)
VOLNA = Operator("Volna mobile", 60)
TINKOFF = Operator("Tinkoff Mobile", 62)
BEELINE = Operator("Beeline", 99)

# Lower-case fragments of legal names (registry, MNP files) and of libphonenumber carrier
# names; the first match wins, so the more specific fragments come first.
_KEYS: tuple[tuple[str, Operator], ...] = (
    ("тинькофф мобайл", TINKOFF),
    ("т-мобайл", TINKOFF),
    ("tinkoff", TINKOFF),
    ("сбербанк-телеком", SBER),
    ("сбермобайл", SBER),
    ("sber", SBER),
    ("скартел", YOTA),
    ("yota", YOTA),
    ("мобильные телесистемы", MTS),
    ("мтс", MTS),
    ("mts", MTS),
    ("мегафон", MEGAFON),
    ("megafon", MEGAFON),
    ("вымпел", BEELINE),
    ("билайн", BEELINE),
    ("beeline", BEELINE),
    ("т2 мобайл", TELE2),
    ("tele2", TELE2),
    ("t2", TELE2),
    ("теле2", TELE2),
    ("екатеринбург-2000", MOTIV),
    ("motiv", MOTIV),
    ("к-телеком", WIN_MOBILE),
    ("win mobile", WIN_MOBILE),
    ("ктк телеком", VOLNA),
    ("volna", VOLNA),
)

_SPACES = re.compile(r"\s+")


def known_operator(name: str) -> Operator | None:
    """The operator a legal or brand name refers to, if it is one of the well-known ones."""
    text = _SPACES.sub(" ", name.lower().replace("ё", "е")).strip()
    if not text:
        return None
    for key, operator in _KEYS:
        if key == "t2" or key == "мтс":
            # short keys only as whole words, so "ООО МТСК" or "AT2X" do not match
            if re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", text):
                return operator
            continue
        if key in text:
            return operator
    return None


_BY_MNC = {
    op.mnc: op
    for op in (MTS, MEGAFON, YOTA, TELE2, WIN_MOBILE, MOTIV, SBER, VOLNA, TINKOFF, BEELINE)
}


def operator_by_mnc(mnc: int | None) -> Operator | None:
    return _BY_MNC.get(mnc) if mnc else None
