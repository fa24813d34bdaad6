"""Import of the ministry's registry files into numbering_ranges (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from opencaller.numbering.lookup import _combined_query
from opencaller.numbering.registry import (
    RegistryFormatError,
    find_range,
    import_registry,
    parse_registry_file,
    read_text,
    split_region,
)
from opencaller.storage.numbering_tables import numbering_imports, numbering_ranges

ALL_FOUR = ["ABC-3xx.csv", "ABC-4xx.csv", "DEF-9xx.csv"]


def test_encodings_are_detected(data: Path) -> None:
    text, encoding = read_text(data / "ABC-4xx.csv")
    assert encoding == "cp1251"
    assert text.startswith("АВС/ DEF;От;До")
    text, encoding = read_text(data / "DEF-9xx.csv")
    assert encoding == "utf-8"
    assert text.startswith("АВС/ DEF")  # BOM removed


def test_old_and_new_columns(data: Path) -> None:
    old = parse_registry_file(data / "ABC-4xx.csv")
    assert old[0].code == 495
    assert (old[0].range_from, old[0].range_to) == (4951000000, 4951099999)
    assert old[0].operator == 'ПАО "Московская городская телефонная сеть"'
    assert (old[0].inn, old[0].territory, old[0].category) == ("", "", "ABC-4xx")

    new = {(r.code, r.range_from): r for r in parse_registry_file(data / "DEF-9xx.csv")}
    perm = new[(909, 9091100000)]
    assert perm.inn == "7713076301"
    assert perm.territory == "г.о. город Пермь|Пермский край"
    assert (perm.region, perm.city, perm.category) == ("Пермский край", "Пермь", "DEF-9xx")
    yota = new[(999, 9991000000)]
    assert yota.region_raw == "-"
    assert yota.region == "Республика Татарстан"  # from the GAR column


@pytest.mark.parametrize(
    ("region_raw", "territory", "expected"),
    [
        ("Пермский край", "", ("Пермский край", "")),
        ("г. Пермь|Пермский край", "", ("Пермский край", "Пермь")),
        ("-", "г.о. город Пермь|Пермский край", ("Пермский край", "Пермь")),
        ("г. Москва и Московская область", "Город Москва", ("Москва", "Москва")),
        ("г. Москва и Московская область", "", ("г. Москва и Московская область", "")),
        ("г. Москва", "", ("Москва", "Москва")),
        ("м.р-н Добрянский|Пермский край", "", ("Пермский край", "")),
        ("", "", ("", "")),
    ],
)
def test_split_region(region_raw: str, territory: str, expected: tuple[str, str]) -> None:
    assert split_region(region_raw, territory) == expected


HEADER = "АВС/ DEF;От;До;Емкость;Оператор;Регион;Территория ГАР;ИНН"
GOOD = '909;1000000;1099999;100000;ПАО "Вымпел-Коммуникации";Пермский край;Пермский край;7713076301'


@pytest.mark.parametrize(
    ("lines", "line", "words"),
    [
        (["АВС/ DEF;От;До;Оператор", GOOD], 1, "Емкость"),
        (["number;operator", "9091000000;x"], 1, "missing column"),
        ([HEADER, GOOD, "909;1OOOOOO;1099999;100000;X;Y;Y;1"], 3, "not 7-digit"),
        ([HEADER, GOOD, "909;1000000;1099999;lots;X;Y;Y;1"], 3, "capacity"),
        ([HEADER, GOOD, "9O9;1000000;1099999;100000;X;Y;Y;1"], 3, "3-digit"),
        ([HEADER, GOOD, "909;1000000;1099999;100000;X;Y"], 3, "expected 8 fields"),
        ([HEADER, GOOD, "909;2000000;1000000;100000;X;Y;Y;1"], 3, "after its end"),
        ([HEADER, GOOD, "909;12345678;12345679;2;X;Y;Y;1"], 3, "not 7-digit"),
        ([HEADER, GOOD, "909;1000000;1099999;100000;;Y;Y;1"], 3, "operator is empty"),
        ([HEADER], None, "no ranges"),
        ([], None, "empty"),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path: Path, lines: list[str], line: int | None, words: str
) -> None:
    path = tmp_path / "DEF-9xx.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RegistryFormatError) as info:
        parse_registry_file(path)
    assert info.value.line == line
    assert info.value.path == str(path)
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_trailing_semicolon_and_quoted_fields(tmp_path: Path) -> None:
    path = tmp_path / "DEF-9xx.csv"
    path.write_text(
        HEADER + ";\n"
        '"909";"1000000";"1099999";"100000";"ПАО ""Вымпел-Коммуникации""";"Пермский край";'
        '"Пермский край";"7713076301";\n',
        encoding="utf-8",
    )
    (row,) = parse_registry_file(path)
    assert row.operator == 'ПАО "Вымпел-Коммуникации"'
    assert row.range_to == 9091099999


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(numbering_ranges)) or 0)


async def holder(engine: AsyncEngine, national: int) -> str | None:
    async with engine.connect() as conn:
        found = await find_range(conn, national)
    return None if found is None else str(found["operator"])


async def test_import_all_files_and_find_ranges(engine: AsyncEngine, data: Path) -> None:
    result = await import_registry(engine, [data / name for name in ALL_FOUR])
    assert result.rows == 11
    assert result.categories == ("ABC-3xx", "ABC-4xx", "DEF-9xx")
    assert result.warnings == ()
    assert result.version > 0
    assert await count(engine) == 11
    assert await holder(engine, 9091000000) == 'ПАО "Вымпел-Коммуникации"'
    assert await holder(engine, 9091099999) == 'ПАО "Вымпел-Коммуникации"'
    assert await holder(engine, 9161234567) == 'ПАО "Мобильные ТелеСистемы"'
    assert await holder(engine, 4951234567) is None  # after the last 495 range
    assert await holder(engine, 4951100000) == 'ПАО "Ростелеком"'
    assert await holder(engine, 9092000000) is None  # after the last 909 range, before 916
    assert await holder(engine, 1000000000) is None  # before every range


async def test_reimport_replaces_the_category(engine: AsyncEngine, data: Path) -> None:
    await import_registry(engine, [data / name for name in ALL_FOUR])
    await import_registry(engine, [data / "DEF-9xx-v2.csv"])
    assert await holder(engine, 9091100000) == 'ПАО "МегаФон"'  # changed hands
    assert await holder(engine, 9585000000) is None  # dropped from the new edition
    assert await holder(engine, 9261000000) == 'ПАО "МегаФон"'  # new range
    assert await holder(engine, 4951000000) is not None  # ABC ranges untouched
    assert await count(engine) == 5 + 4


async def test_replace_all(engine: AsyncEngine, data: Path) -> None:
    await import_registry(engine, [data / name for name in ALL_FOUR])
    await import_registry(engine, [data / "DEF-9xx-v2.csv"], replace_all=True)
    assert await count(engine) == 4
    assert await holder(engine, 4951000000) is None


async def test_malformed_file_leaves_data_untouched(engine: AsyncEngine, data: Path) -> None:
    first = await import_registry(engine, [data / name for name in ALL_FOUR])
    with pytest.raises(RegistryFormatError) as info:
        # the good files come first: nothing of them may be written either
        await import_registry(
            engine, [data / "DEF-9xx-v2.csv", data / "DEF-9xx-malformed.csv"], replace_all=True
        )
    assert info.value.line == 4
    assert "DEF-9xx-malformed.csv" in str(info.value)
    assert await count(engine) == 11
    assert await holder(engine, 9091100000) == 'ПАО "Вымпел-Коммуникации"'
    async with engine.connect() as conn:
        version = await conn.scalar(select(func.max(numbering_imports.c.id)))
    assert version == first.version


async def test_warnings_for_overlaps_and_capacity(engine: AsyncEngine, tmp_path: Path) -> None:
    path = tmp_path / "DEF-9xx.csv"
    path.write_text(
        "\n".join(
            [
                HEADER,
                GOOD,
                '909;1050000;1059999;10000;ООО "Другой";Пермский край;Пермский край;1',
                '909;2000000;2000999;5;ООО "Третий";Пермский край;Пермский край;1',
            ]
        ),
        encoding="utf-8",
    )
    result = await import_registry(engine, [path])
    assert result.rows == 3
    assert any("overlap" in w for w in result.warnings)
    assert any("capacity 5" in w for w in result.warnings)
    # the narrower range that starts later wins inside the overlap
    assert await holder(engine, 9091055555) == 'ООО "Другой"'


@pytest.mark.parametrize("which", ["find_range", "directory"])
async def test_range_query_uses_the_index(engine: AsyncEngine, data: Path, which: str) -> None:
    await import_registry(engine, [data / name for name in ALL_FOUR])
    query: Select[Any] = (
        select(numbering_ranges)
        .where(numbering_ranges.c.range_from <= 9091000000)
        .order_by(numbering_ranges.c.range_from.desc())
        .limit(1)
    )
    if which == "directory":  # the one-round-trip query PhoneDirectory.lookup runs
        query = _combined_query(9091000000, 79091000000)
    async with engine.connect() as conn:
        compiled = str(query.compile(conn.sync_engine, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            plan = " ".join(
                str(row[-1]) for row in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled)
            )
        else:
            # a table this small is cheaper to scan; forbid that to see the index is usable
            await conn.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(
                str(row[0]) for row in await conn.exec_driver_sql("EXPLAIN " + compiled)
            )
    assert "ix_numbering_ranges_from" in plan, plan
    assert "TEMP B-TREE" not in plan  # no sort step on SQLite
