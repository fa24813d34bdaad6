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
from collections.abc import Iterable
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


@dataclass(frozen=True, slots=True)
class _Layout:
    """How a file is laid out: its separator, its columns (-1: absent), its first data line."""

    sep: str
    number_at: int
    operator_at: int
    mnc_at: int
    start: int


def _layout(lines: list[str], source: str | Path) -> _Layout:
    """Read from the first non-empty line: a header row names the columns; without one the
    columns are number, operator, MNC."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise RegistryFormatError(source, None, "file is empty")
    sep = ";" if lines[first].count(";") >= lines[first].count(",") else ","
    head = [_unquote(f).lower() for f in lines[first].split(sep)]
    if any(ch.isdigit() for ch in head[0]):  # data from the first line
        return _Layout(sep, 0, 1, 2, first)
    found = {name: i for i, name in enumerate(head)}
    number_at, operator_at, mnc_at = (
        _column(found, _NUMBER_NAMES),
        _column(found, _OPERATOR_NAMES),
        _column(found, _MNC_NAMES),
    )
    if number_at < 0 or operator_at < 0:
        raise RegistryFormatError(source, first + 1, "header needs a number and an operator column")
    return _Layout(sep, number_at, operator_at, mnc_at, first + 1)


def _column(found: dict[str, int], names: Iterable[str]) -> int:
    """The index of the first of ``names`` the header has, else -1."""
    return next((found[n] for n in names if n in found), -1)


def _ported(fields: list[str], at: _Layout, source: str | Path, line_no: int) -> PortedNumber:
    """One data line, checked: a Russian number, an operator, an MNC if there is one."""
    if len(fields) <= max(at.number_at, at.operator_at):
        raise RegistryFormatError(source, line_no, "expected at least number and operator")
    number = russian_number(fields[at.number_at])
    if number is None:
        raise RegistryFormatError(
            source, line_no, f"{fields[at.number_at]!r} is not a Russian phone number"
        )
    operator = fields[at.operator_at]
    if not operator:
        raise RegistryFormatError(source, line_no, "operator is empty")
    mnc: int | None = None
    if 0 <= at.mnc_at < len(fields) and fields[at.mnc_at]:
        if not (fields[at.mnc_at].isascii() and fields[at.mnc_at].isdigit()):
            raise RegistryFormatError(source, line_no, f"MNC {fields[at.mnc_at]!r} is not a number")
        mnc = int(fields[at.mnc_at])
    return PortedNumber(number=number, operator=operator, mnc=mnc)


def parse_mnp_text(text: str, source: str | Path) -> list[PortedNumber]:
    lines = text.splitlines()
    at = _layout(lines, source)
    return [
        _ported([_unquote(f) for f in line.split(at.sep)], at, source, line_no)
        for line_no, line in enumerate(lines[at.start :], start=at.start + 1)
        if line.strip()
    ]


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
