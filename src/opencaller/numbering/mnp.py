"""Import of ported Russian numbers (MNP): which operator serves a number now.

Accepted file (see docs/numbering.md): UTF-8 or Windows-1251 text, fields separated by ``;``
or ``,`` (whichever the first line uses), one number per line::

    number;operator[;mnc[;anything else]]

An optional header row names the columns; recognised names are ``number``/``Number``/
``Номер``/``msisdn``, ``operator``/``OwnerId``/``Оператор``/``recipient`` and ``mnc``/``MNC``,
which also lets the file the central MNP database publishes
(``Number,OwnerId,MNC,Route,RegionCode,PortDate,RowCount``) be loaded as is. Numbers are
Russian: 10 digits (``9091000000``), or 11 digits starting with 7 or 8, with or without ``+``.
An import replaces the whole table in one transaction; a bad line refuses the file.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from opencaller.numbering.registry import (
    BATCH,
    ImportResult,
    RegistryFormatError,
    chunks,
    read_text,
    record_import,
)
from opencaller.storage.numbering_tables import ported_numbers

_NUMBER_NAMES = {"number", "номер", "msisdn", "phone", "телефон"}
_OPERATOR_NAMES = {"operator", "ownerid", "оператор", "recipient", "owner"}
_MNC_NAMES = {"mnc"}
_NON_DIGITS = re.compile(r"[^0-9]")


@dataclass(frozen=True, slots=True)
class PortedNumber:
    number: int  # E.164 as an integer: 79091000000
    operator: str
    mnc: int | None


def russian_number(text: str) -> int | None:
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        return None  # digits of other scripts would make a second spelling of a number
    digits = _NON_DIGITS.sub("", text)
    if len(digits) == 10:
        return int("7" + digits)
    if len(digits) == 11 and digits[0] in "78":
        return int("7" + digits[1:])
    return None


def _unquote(field: str) -> str:
    field = field.strip()
    if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
        field = field[1:-1].replace('""', '"').strip()
    return field


def parse_mnp_text(text: str, source: str | Path) -> list[PortedNumber]:
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise RegistryFormatError(source, None, "file is empty")
    sep = ";" if lines[first].count(";") >= lines[first].count(",") else ","
    head = [_unquote(f).lower() for f in lines[first].split(sep)]
    number_at, operator_at, mnc_at = 0, 1, 2
    start = first
    if not any(ch.isdigit() for ch in head[0]):  # a header row
        found = {name: i for i, name in enumerate(head)}
        number_at = next((found[n] for n in _NUMBER_NAMES if n in found), -1)
        operator_at = next((found[n] for n in _OPERATOR_NAMES if n in found), -1)
        mnc_at = next((found[n] for n in _MNC_NAMES if n in found), -1)
        if number_at < 0 or operator_at < 0:
            raise RegistryFormatError(
                source, first + 1, "header needs a number and an operator column"
            )
        start = first + 1
    result: list[PortedNumber] = []
    for line_no, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = [_unquote(f) for f in line.split(sep)]
        if len(fields) <= max(number_at, operator_at):
            raise RegistryFormatError(source, line_no, "expected at least number and operator")
        number = russian_number(fields[number_at])
        if number is None:
            raise RegistryFormatError(
                source, line_no, f"{fields[number_at]!r} is not a Russian phone number"
            )
        operator = fields[operator_at]
        if not operator:
            raise RegistryFormatError(source, line_no, "operator is empty")
        mnc: int | None = None
        if 0 <= mnc_at < len(fields) and fields[mnc_at]:
            if not (fields[mnc_at].isascii() and fields[mnc_at].isdigit()):
                raise RegistryFormatError(
                    source, line_no, f"MNC {fields[mnc_at]!r} is not a number"
                )
            mnc = int(fields[mnc_at])
        result.append(PortedNumber(number=number, operator=operator, mnc=mnc))
    return result


def parse_mnp_file(path: str | Path) -> list[PortedNumber]:
    text, _encoding = read_text(path)
    return parse_mnp_text(text, path)


async def import_mnp(engine: AsyncEngine, path: str | Path) -> ImportResult:
    """Replace the ported-numbers table with the content of one file."""
    entries = await asyncio.to_thread(parse_mnp_file, path)
    # the latest line for a number wins (files are usually in porting order)
    latest: dict[int, PortedNumber] = {entry.number: entry for entry in entries}
    rows: list[dict[str, Any]] = [
        {"number": e.number, "operator": e.operator[:512], "mnc": e.mnc, "source": Path(path).name}
        for e in latest.values()
    ]
    async with engine.begin() as conn:
        await conn.execute(delete(ported_numbers))
        for chunk in chunks(rows, BATCH):
            await conn.execute(insert(ported_numbers), list(chunk))
        version = await record_import(conn, "mnp", [str(path)], len(rows))
    warnings: tuple[str, ...] = ()
    if len(latest) != len(entries):
        warnings = (f"{len(entries) - len(latest)} repeated number(s); the last line won",)
    return ImportResult(
        kind="mnp",
        files=(str(path),),
        rows=len(rows),
        categories=(),
        warnings=warnings,
        version=version,
    )
