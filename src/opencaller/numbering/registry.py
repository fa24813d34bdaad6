"""Import of the Russian numbering plan registry as the ministry publishes it.

The registry comes as four CSV files (ABC-3xx, ABC-4xx, ABC-8xx, DEF-9xx): ``;``-separated,
one header row ``АВС/ DEF;От;До;Емкость;Оператор;Регион`` — newer files add ``ИНН`` and
``Территория ГАР`` — and one row per range (``От``/``До`` are the 7-digit subscriber parts).
Older files are Windows-1251, newer ones UTF-8 with a BOM. Columns are found by their header
name, so the order does not matter.

An import reads and checks every file completely before it touches the database; a bad
file is refused with its name and line and the data already loaded stays as it was. The
accepted rows then replace the old ones in one transaction.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from opencaller.storage.numbering_tables import numbering_imports, numbering_ranges

BATCH = 5000
MAX_WARNINGS = 20


class RegistryFormatError(ValueError):
    """A file that cannot be imported; names the file and, when known, the line."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class RangeRow:
    category: str
    code: int
    range_from: int  # full 10-digit national number
    range_to: int
    capacity: int
    operator: str
    inn: str
    region: str
    city: str
    region_raw: str
    territory: str
    source: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    kind: str  # registry | mnp
    files: tuple[str, ...]
    rows: int
    categories: tuple[str, ...]  # registry categories replaced (empty for MNP)
    warnings: tuple[str, ...]
    version: int  # id of the numbering_imports row; the directory's new version


# --- reading -------------------------------------------------------------------------------


def read_text(path: str | Path) -> tuple[str, str]:
    """The file's text and the encoding that decoded it (UTF-8 first, then Windows-1251)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        # cp1251 maps almost every byte, so it is only a fallback, never a guess
        return data.decode("cp1251"), "cp1251"


def _header_key(name: str) -> str:
    key = re.sub(r"[\s/\\_.]", "", name.strip().lstrip("\ufeff").lower()).replace("ё", "е")
    # the ministry writes "АВС" in Cyrillic; people retype it in Latin
    return key.translate(str.maketrans("abc", "авс"))


_COLUMNS = {
    "авсdef": "code",
    "defавс": "code",
    "авс": "code",
    "def": "code",
    "от": "from",
    "до": "to",
    "емкость": "capacity",
    "оператор": "operator",
    "регион": "region",
    "инн": "inn",
    "территориягар": "territory",
    "гар": "territory",
}
_REQUIRED = ("code", "from", "to", "capacity", "operator", "region")
_HUMAN = {
    "code": "АВС/ DEF",
    "from": "От",
    "to": "До",
    "capacity": "Емкость",
    "operator": "Оператор",
    "region": "Регион",
}


def split_fields(line: str) -> list[str]:
    """Split one ``;`` line; fields wrapped in double quotes are unwrapped ("" -> ")."""
    fields = []
    for raw in line.split(";"):
        field = raw.strip()
        if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
            field = field[1:-1].replace('""', '"').strip()
        fields.append(field)
    return fields


def _int(field: str) -> int | None:
    text = field.replace(" ", "").replace("\u00a0", "")
    return int(text) if text.isascii() and text.isdigit() else None


_CITY_PREFIXES = (
    "г.о. город-курорт ",
    "г.о. город ",
    "город-курорт ",
    "город ",
    "г.о. ",
    "г. ",
    "пгт ",
    "рп ",
)


def _city(part: str) -> str:
    low = part.lower()
    for prefix in _CITY_PREFIXES:
        if low.startswith(prefix):
            return part[len(prefix) :].strip()
    return ""


def split_region(region_raw: str, territory: str) -> tuple[str, str]:
    """(region, city) from the "Территория ГАР" column, else from "Регион".

    Both read "settlement|...|subject" ("г.о. город Пермь|Пермский край") or just the
    subject ("Пермский край"). The GAR column is preferred because it is filled on every row
    of the newer files while "Регион" sometimes carries only a dash. A lone federal city
    ("Город Москва", "г. Москва") is both the region and the city.
    """
    for text in (territory, region_raw):
        parts = [p.strip() for p in text.split("|") if p.strip() and p.strip() not in "-—"]
        if not parts:
            continue
        region = parts[-1]
        if len(parts) > 1:
            return region, _city(parts[0])
        city = _city(region)
        if city and " и " not in city:  # "г. Москва и Московская область" names two places
            return city, city
        return region, ""
    return "", ""


def category_of(code: int) -> str:
    lead = str(code)[0]
    return f"{'DEF' if lead == '9' else 'ABC'}-{lead}xx"


def _header(lines: list[str], source: str | Path) -> tuple[int, dict[str, int], int]:
    """Where the header is, the index of each known column, and how many fields it has."""
    header_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_at is None:
        raise RegistryFormatError(source, None, "file is empty")
    header = split_fields(lines[header_at])
    columns: dict[str, int] = {}
    for index, title in enumerate(header):
        role = _COLUMNS.get(_header_key(title))
        if role and role not in columns:
            columns[role] = index
    missing = [_HUMAN[role] for role in _REQUIRED if role not in columns]
    if missing:
        raise RegistryFormatError(
            source,
            header_at + 1,
            "not a numbering registry header, missing column(s): "
            + ", ".join(missing)
            + f" (got {lines[header_at][:200]!r})",
        )
    return header_at, columns, len(header)


def _fields(line: str, width: int, source: str | Path, number: int) -> list[str]:
    fields = split_fields(line)
    while len(fields) > width and fields[-1] == "":  # a trailing ";"
        fields.pop()
    if len(fields) != width:
        raise RegistryFormatError(
            source, number, f"expected {width} fields separated by ';', got {len(fields)}"
        )
    return fields


def _range_row(
    fields: list[str], columns: dict[str, int], source: str | Path, number: int
) -> RangeRow:
    """One data line, checked: a 3-digit code, 7-digit bounds in order, a capacity and an
    operator."""

    def get(role: str) -> str:
        index = columns.get(role)
        return fields[index] if index is not None else ""

    code = _int(get("code"))
    if code is None or not 100 <= code <= 999:
        raise RegistryFormatError(
            source, number, f"АВС/ DEF code {get('code')!r} is not a 3-digit number"
        )
    low, high, capacity = _int(get("from")), _int(get("to")), _int(get("capacity"))
    if low is None or high is None or low > 9_999_999 or high > 9_999_999:
        raise RegistryFormatError(
            source,
            number,
            f"range bounds {get('from')!r}..{get('to')!r} are not 7-digit numbers",
        )
    if low > high:
        raise RegistryFormatError(source, number, f"range start {low} is after its end {high}")
    if capacity is None:
        raise RegistryFormatError(source, number, f"capacity {get('capacity')!r} is not a number")
    operator = get("operator")
    if not operator:
        raise RegistryFormatError(source, number, "operator is empty")
    region_raw, territory = get("region"), get("territory")
    region, city = split_region(region_raw, territory)
    base = code * 10_000_000
    return RangeRow(
        category=category_of(code),
        code=code,
        range_from=base + low,
        range_to=base + high,
        capacity=capacity,
        operator=operator,
        inn=re.sub(r"\D", "", get("inn"))[:12],
        region=region,
        city=city,
        region_raw=region_raw,
        territory=territory,
        source=Path(source).name,
    )


def parse_registry_text(text: str, source: str | Path) -> list[RangeRow]:
    """Check and convert one registry file's text; raises :class:`RegistryFormatError`."""
    lines = text.splitlines()
    header_at, columns, width = _header(lines, source)
    rows = [
        _range_row(_fields(line, width, source, number), columns, source, number)
        for number, line in enumerate(lines[header_at + 1 :], start=header_at + 2)
        if line.strip()
    ]
    if not rows:
        raise RegistryFormatError(source, None, "no ranges after the header")
    return rows


def parse_registry_file(path: str | Path) -> list[RangeRow]:
    text, _encoding = read_text(path)
    return parse_registry_text(text, path)


def check_rows(rows: Sequence[RangeRow]) -> list[str]:
    """Warnings that do not stop an import: capacity mismatches and overlapping ranges."""
    warnings: list[str] = []
    for row in rows:
        size = row.range_to - row.range_from + 1
        if row.capacity != size and len(warnings) < MAX_WARNINGS:
            warnings.append(
                f"{row.source}: {row.code} {row.range_from % 10**7:07d}..{row.range_to % 10**7:07d}"
                f" has capacity {row.capacity}, range holds {size}"
            )
    ordered = sorted(rows, key=lambda r: r.range_from)
    for before, after in itertools.pairwise(ordered):
        if after.range_from <= before.range_to and len(warnings) < MAX_WARNINGS:
            warnings.append(
                f"ranges overlap: {before.range_from}..{before.range_to} ({before.source}) and "
                f"{after.range_from}..{after.range_to} ({after.source})"
            )
    return warnings


# --- database ------------------------------------------------------------------------------


def _row_dict(row: RangeRow) -> dict[str, Any]:
    return {
        "category": row.category,
        "code": row.code,
        "range_from": row.range_from,
        "range_to": row.range_to,
        "capacity": row.capacity,
        "operator": row.operator[:512],
        "inn": row.inn,
        "region": row.region[:256],
        "city": row.city[:256],
        "region_raw": row.region_raw,
        "territory": row.territory,
        "source": row.source[:256],
    }


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def record_import(conn: AsyncConnection, kind: str, files: Sequence[str], rows: int) -> int:
    result = await conn.execute(
        insert(numbering_imports).values(
            kind=kind, files="\n".join(files), rows=rows, created_at=time.time()
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def directory_version(conn: AsyncConnection) -> int:
    """Id of the latest import, 0 before the first; changes whenever an import commits."""
    value = await conn.scalar(select(func.max(numbering_imports.c.id)))
    return int(value or 0)


async def import_registry(
    engine: AsyncEngine, paths: Sequence[str | Path], *, replace_all: bool = False
) -> ImportResult:
    """Load registry files, replacing the ranges of the categories they contain.

    Importing all four files (or ``replace_all=True``) replaces the whole set; importing only
    DEF-9xx.csv refreshes the mobile ranges and keeps the ABC ones.
    """
    if not paths:
        raise ValueError("no files to import")
    rows: list[RangeRow] = []
    for path in paths:
        rows.extend(await asyncio.to_thread(parse_registry_file, path))
    warnings = check_rows(rows)
    categories = tuple(sorted({row.category for row in rows}))
    files = [str(path) for path in paths]
    async with engine.begin() as conn:
        if replace_all:
            await conn.execute(delete(numbering_ranges))
        else:
            await conn.execute(
                delete(numbering_ranges).where(numbering_ranges.c.category.in_(categories))
            )
        for chunk in chunks(rows, BATCH):
            await conn.execute(insert(numbering_ranges), [_row_dict(row) for row in chunk])
        version = await record_import(conn, "registry", files, len(rows))
    return ImportResult(
        kind="registry",
        files=tuple(files),
        rows=len(rows),
        categories=categories,
        warnings=tuple(warnings),
        version=version,
    )


async def find_range(conn: AsyncConnection, national_number: int) -> dict[str, Any] | None:
    """The registry range holding a Russian national number, through the range_from index."""
    row = (
        await conn.execute(
            select(numbering_ranges)
            .where(numbering_ranges.c.range_from <= national_number)
            .order_by(numbering_ranges.c.range_from.desc())
            .limit(1)
        )
    ).first()
    if row is None or row.range_to < national_number:
        return None
    return dict(row._mapping)
