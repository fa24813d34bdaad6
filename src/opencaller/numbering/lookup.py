"""What we know about a phone number: checkPhone fields, getInfo ``phone_info``, webhook fields.

Two sources are combined. libphonenumber (the ``phonenumbers`` package) knows every country:
validity, mobile or fixed, country, a carrier name for some ranges and a place name for fixed
lines. For Russian numbers the imported numbering plan registry adds the range holder (legal
name, INN) and the region, and the imported MNP table says who serves a ported number now.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from phonenumbers import PhoneNumberType, carrier
from sqlalchemy import BigInteger, Select, bindparam, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import opencaller.numbering.places as places
from opencaller.numbering.mnp import PortedNumber, import_mnp
from opencaller.numbering.operators import known_operator, operator_by_mnc
from opencaller.numbering.parse import (
    DEFAULT_REGION,
    InvalidPhoneNumber,
    InvalidReason,
    ParsedPhone,
    parse_phone,
)
from opencaller.numbering.registry import (
    ImportResult,
    directory_version,
    import_registry,
)
from opencaller.storage.hot import Hot
from opencaller.storage.numbering_tables import numbering_ranges, ported_numbers

FLAG_BASE_URL = "https://static.ucaller.ru/flag/"


def flag_url(country_iso: str, base: str = FLAG_BASE_URL) -> str:
    """getInfo ``country_image``: ``https://static.ucaller.ru/flag/ru.svg`` for ``RU``."""
    return f"{base}{country_iso.lower()}.svg" if country_iso else ""


@dataclass(frozen=True, slots=True)
class PhoneInfo:
    # checkPhone fields (spec §6.7), with their wire types
    source: str  # the input as received
    mobile: int  # 1 mobile, 0 not mobile
    phone: int  # E.164 as a number: 79091000000
    country_iso: str  # "RU"
    country_code: int  # 7
    mnc: int  # mobile network code of the serving operator, 0 when unknown
    number: int  # national number: 9091000000
    provider: str  # brand of the serving operator: "Beeline"
    company: str  # legal entity of the serving operator (Russian numbers only)
    country: str  # country name in Russian: "Россия"
    region: str  # "Пермский край"
    city: str  # "Пермь" when the registry names a settlement, else ""
    phone_format: str  # "+7 909 100-00-00"
    # getInfo phone_info and webhook fields (spec §6.3, §6.8)
    operator: str  # range holder as the registry (or libphonenumber) names it
    mnp_operator: str | None  # operator the number was ported to; None when not ported
    is_mnp: bool
    in_registry: bool  # a range of the imported registry holds the number

    @property
    def e164(self) -> str:
        return str(self.phone)

    @property
    def country_image(self) -> str:
        return flag_url(self.country_iso)

    def check_phone_fields(self) -> dict[str, Any]:
        """The checkPhone body without ``status``, ``cost`` and ``balance``."""
        return {
            "source": self.source,
            "mobile": self.mobile,
            "phone": self.phone,
            "country_iso": self.country_iso,
            "country_code": self.country_code,
            "mnc": self.mnc,
            "number": self.number,
            "provider": self.provider,
            "company": self.company,
            "country": self.country,
            "region": self.region,
            "city": self.city,
            "phone_format": self.phone_format,
        }

    def phone_info_entry(self) -> dict[str, str]:
        """One element of getInfo ``phone_info``: ``{"operator", "region", "mnp"}``."""
        return {"operator": self.operator, "region": self.region, "mnp": self.mnp_operator or ""}

    def webhook_fields(self) -> dict[str, Any]:
        """inboundCallWaiting webhook: ``operatorName``, ``operatorNameMnp``, ...``isMnp``."""
        return {
            "isMnp": self.is_mnp,
            "operatorName": self.operator or None,
            "operatorNameMnp": self.mnp_operator if self.is_mnp else None,
            "regionName": self.region,
        }


def describe(phone: object, default_region: str | None = DEFAULT_REGION) -> PhoneInfo:
    """What libphonenumber alone knows; no database. Raises :class:`InvalidPhoneNumber`.

    Fast enough for request validation and geography rules (country_iso).
    """
    parsed = phone if isinstance(phone, ParsedPhone) else parse_phone(phone, default_region)
    return _describe(parsed)


# Types libphonenumber has carrier names for, and those answered as mobile (see ParsedPhone).
_CARRIER_TYPES = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER}
)
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def _describe(parsed: ParsedPhone) -> PhoneInfo:
    number = parsed.number
    # Not phonenumbers.geocoder: its data costs every process ~100 MB (see places.py).
    names = places.names()
    # The number's type takes libphonenumber ~50 us: worked out once here, not in every call.
    kind = parsed.number_type
    country = names.country_name_for_number(number) if parsed.region else ""
    carrier_en = carrier_ru = ""
    if kind in _CARRIER_TYPES:
        carrier_en = carrier.name_for_valid_number(number, "en")
        carrier_ru = carrier.name_for_valid_number(number, "ru") or carrier_en
    provider, mnc = carrier_en, 0
    if parsed.region == "RU":
        known = known_operator(carrier_en)
        if known:
            provider, mnc = known.brand, known.mnc
    place = names.description_for_number(
        number, kind=kind, country=country if parsed.region else None
    )
    return PhoneInfo(
        source=parsed.source,
        mobile=1 if kind in _MOBILE_TYPES else 0,
        phone=parsed.phone,
        country_iso=parsed.region,
        country_code=parsed.country_code,
        mnc=mnc,
        number=parsed.national_number,
        provider=provider,
        company="",
        country=country,
        region=place if place and place != country else "",
        city="",
        phone_format=parsed.format_international(),
        operator=carrier_ru,
        mnp_operator=None,
        is_mnp=False,
        in_registry=False,
    )


def _with_registry(info: PhoneInfo, found: dict[str, Any]) -> PhoneInfo:
    holder = str(found["operator"])
    known = known_operator(holder)
    return replace(
        info,
        mobile=1 if str(found["category"]).startswith("DEF") else 0,
        operator=holder,
        company=holder,
        provider=known.brand if known else (info.provider or holder),
        mnc=known.mnc if known else 0,
        region=str(found["region"]) or info.region,
        city=str(found["city"]),
        in_registry=True,
    )


def _with_porting(info: PhoneInfo, ported: PortedNumber) -> PhoneInfo:
    known = known_operator(ported.operator) or operator_by_mnc(ported.mnc)
    return replace(
        info,
        mnp_operator=ported.operator,
        is_mnp=True,
        company=ported.operator,
        provider=known.brand if known else ported.operator,
        mnc=ported.mnc if ported.mnc is not None else (known.mnc if known else 0),
    )


_RANGE_COLUMNS = (
    numbering_ranges.c.range_to,
    numbering_ranges.c.category,
    numbering_ranges.c.operator,
    numbering_ranges.c.region,
    numbering_ranges.c.city,
)


def _combined_query(national_number: int | None = None, phone: int | None = None) -> Select[Any]:
    """Range holder and porting in one round trip (both through an index).

    Without arguments the numbers are bind parameters ``n`` and ``phone``; the statement is
    then built once, which saves most of the Python time of an uncached lookup.
    """
    # Without numbers the binds have no value at all (required), not the value None: a
    # statement built once must take the numbers of each call as typed parameters.
    def number(name: str, value: int | None) -> Any:
        if value is None:
            return bindparam(name, type_=BigInteger)
        return bindparam(name, value, type_=BigInteger)

    n = number("n", national_number)
    holder = (
        select(*_RANGE_COLUMNS)
        .where(numbering_ranges.c.range_from <= n)
        .order_by(numbering_ranges.c.range_from.desc())
        .limit(1)
        .subquery("r")
    )
    anchor = select(number("phone", phone).label("number")).subquery("q")
    return (
        select(
            holder,
            ported_numbers.c.operator.label("ported_operator"),
            ported_numbers.c.mnc.label("ported_mnc"),
        )
        .select_from(anchor)
        .outerjoin(holder, true())
        .outerjoin(ported_numbers, ported_numbers.c.number == anchor.c.number)
    )


_COMBINED = _combined_query()
_COMBINED_HOT = Hot(_COMBINED)

# Runs a hot statement outside a transaction (Database.fetch_one).
Fetch = Callable[[Hot, Mapping[str, Any]], Awaitable[Mapping[str, Any] | None]]


async def _registry_and_porting(
    conn: AsyncConnection, national_number: int, phone: int
) -> tuple[dict[str, Any] | None, PortedNumber | None]:
    row = (await conn.execute(_COMBINED, {"n": national_number, "phone": phone})).one()
    return _holder_and_porting(row._mapping, national_number, phone)


def _holder_and_porting(
    row: Mapping[str, Any], national_number: int, phone: int
) -> tuple[dict[str, Any] | None, PortedNumber | None]:
    found: dict[str, Any] | None = None
    if row["range_to"] is not None and row["range_to"] >= national_number:
        found = {
            "category": row["category"],
            "operator": row["operator"],
            "region": row["region"],
            "city": row["city"],
        }
    ported = None
    if row["ported_operator"] is not None:
        ported = PortedNumber(number=phone, operator=row["ported_operator"], mnc=row["ported_mnc"])
    return found, ported


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    version: int


# About 400 bytes an entry. Clients poll getInfo for numbers called in the last minutes: at 50
# new numbers a second, 10,000 entries hold over three minutes of them in ~4 MB (100,000 took
# ~40 MB, still filling after half an hour of traffic).
CACHE_SIZE = 10_000


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[int, PhoneInfo | InvalidReason] = OrderedDict()

    def get(self, key: int) -> PhoneInfo | InvalidReason | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: int, value: PhoneInfo | InvalidReason) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class PhoneDirectory:
    """Phone lookups for checkPhone/getInfo, with an in-memory LRU cache.

    The cache is dropped after every import: at once for imports made through this object,
    and within ``version_check_s`` seconds for imports made by another process (the CLI), which
    the directory notices through the ``numbering_imports`` table.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        default_region: str | None = DEFAULT_REGION,
        cache_size: int = CACHE_SIZE,
        version_check_s: float = 5.0,
        fetch: Fetch | None = None,
    ) -> None:
        self.engine = engine
        self.fetch = fetch  # the request path's faster way to the same database, if given
        self.default_region = default_region
        self.version_check_s = version_check_s
        self._cache = _Lru(cache_size)
        self._generation = 0  # bumped on every invalidation; guards against stale puts
        self._version = -1  # last seen numbering_imports id
        self._checked_at = float("-inf")
        self._first_check: asyncio.Future[None] | None = None
        self._hits = 0
        self._misses = 0

    # --- lookups ---

    def lookup_offline(self, phone: object) -> PhoneInfo:
        """Synchronous, no database: libphonenumber only (see :func:`describe`)."""
        return describe(phone, self.default_region)

    async def lookup_e164(self, digits: str) -> PhoneInfo:
        """``lookup`` for a number already in E.164 digits (as stored): a cached answer is
        returned without parsing the number again."""
        await self._refresh_version()
        cached = self._cache.get(int(digits)) if digits.isdigit() else None
        if isinstance(cached, PhoneInfo):
            self._hits += 1
            return replace(cached, source=digits)
        return await self.lookup("+" + digits)

    async def lookup(self, phone: object) -> PhoneInfo:
        """Everything known about ``phone``; raises :class:`InvalidPhoneNumber`.

        A number libphonenumber does not know is still accepted when the imported registry
        holds it (new Russian ranges reach the registry before the library's metadata).
        """
        parsed = parse_phone(phone, self.default_region, strict=False)
        await self._refresh_version()
        key = parsed.phone
        cached = self._cache.get(key)
        if cached is not None:
            self._hits += 1
            if isinstance(cached, InvalidReason):
                raise InvalidPhoneNumber(parsed.source, cached)
            return replace(cached, source=parsed.source)
        self._misses += 1
        generation = self._generation
        result: PhoneInfo | InvalidReason = await self._resolve(parsed)
        if generation == self._generation:
            self._cache.put(
                key, replace(result, source="") if isinstance(result, PhoneInfo) else result
            )
        if isinstance(result, InvalidReason):
            raise InvalidPhoneNumber(parsed.source, result)
        return result

    async def _resolve(self, parsed: ParsedPhone) -> PhoneInfo | InvalidReason:
        russian = (
            parsed.country_code == 7
            and parsed.region in ("RU", "")
            and (parsed.national_number >= 1_000_000_000)
        )
        if not russian:
            return _describe(parsed) if parsed.valid else InvalidReason.NOT_ASSIGNED
        n, phone = parsed.national_number, parsed.phone
        if self._version == 0:
            # Nothing was ever imported (ranges only arrive by import): the tables are empty.
            found, ported = None, None
        elif self.fetch is not None:
            row = await self.fetch(_COMBINED_HOT, {"n": n, "phone": phone})
            assert row is not None  # an outer join from a one-row anchor
            found, ported = _holder_and_porting(row, n, phone)
        else:
            async with self.engine.connect() as conn:
                found, ported = await _registry_and_porting(conn, n, phone)
        if not parsed.valid and found is None:
            return InvalidReason.NOT_ASSIGNED
        info = _describe(parsed)
        if not parsed.valid:  # known only to the registry; libphonenumber names no country
            info = replace(info, country_iso="RU", country="Россия")
        if found is not None:
            info = _with_registry(info, found)
        if ported is not None:
            info = _with_porting(info, ported)
        return info

    # --- cache ---

    def invalidate(self) -> None:
        self._cache.items.clear()
        self._generation += 1

    async def _refresh_version(self) -> None:
        if self._version == -1:
            # Until the first check has answered, nothing is known about the tables: the
            # requests of a fresh node wait for that one check (all of them, and it alone).
            if self._first_check is None:
                self._first_check = asyncio.ensure_future(self._check_version())
                self._first_check.add_done_callback(self._first_check_done)
            await asyncio.shield(self._first_check)
            return
        if time.monotonic() - self._checked_at < self.version_check_s:
            return
        await self._check_version()

    def _first_check_done(self, task: asyncio.Future[None]) -> None:
        self._first_check = None  # a failed check is tried again by the next request
        if not task.cancelled():
            task.exception()  # retrieved: the waiting requests report it

    async def _check_version(self) -> None:
        self._checked_at = time.monotonic()
        async with self.engine.connect() as conn:
            version = await directory_version(conn)
        if version != self._version:
            if self._version != -1:
                self.invalidate()
            self._version = version

    def cache_stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, len(self._cache.items), self._version)

    # --- imports (drop the cache of this process at once) ---

    async def import_registry(
        self, paths: Sequence[str | Path], *, replace_all: bool = False
    ) -> ImportResult:
        result = await import_registry(self.engine, paths, replace_all=replace_all)
        self._after_import(result.version)
        return result

    async def import_mnp(self, path: str | Path) -> ImportResult:
        result = await import_mnp(self.engine, path)
        self._after_import(result.version)
        return result

    def _after_import(self, version: int) -> None:
        self.invalidate()
        self._version = version
        self._checked_at = time.monotonic()
