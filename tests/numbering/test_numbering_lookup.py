"""PhoneDirectory: libphonenumber + registry + MNP, and its cache (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from opencaller.numbering import InvalidPhoneNumber, InvalidReason, PhoneDirectory, PhoneInfo
from opencaller.numbering.mnp import import_mnp, parse_mnp_file
from opencaller.numbering.registry import RegistryFormatError, import_registry

REGISTRY = ["ABC-3xx.csv", "ABC-4xx.csv", "DEF-9xx.csv"]


@pytest.fixture
async def directory(engine: AsyncEngine, data: Path) -> PhoneDirectory:
    d = PhoneDirectory(engine)
    await d.import_registry([data / name for name in REGISTRY])
    await d.import_mnp(data / "mnp.csv")
    return d


async def test_russian_mobile_matches_the_spec_example(directory: PhoneDirectory) -> None:
    info = await directory.lookup("+7 909 100-00-00")
    assert info.check_phone_fields() == {
        "source": "+7 909 100-00-00",
        "mobile": 1,
        "phone": 79091000000,
        "country_iso": "RU",
        "country_code": 7,
        "mnc": 99,
        "number": 9091000000,
        "provider": "Beeline",
        "company": 'ПАО "Вымпел-Коммуникации"',
        "country": "Россия",
        "region": "Пермский край",
        "city": "",
        "phone_format": "+7 909 100-00-00",
    }
    assert info.in_registry and not info.is_mnp
    assert info.phone_info_entry() == {
        "operator": 'ПАО "Вымпел-Коммуникации"',
        "region": "Пермский край",
        "mnp": "",
    }
    assert info.webhook_fields() == {
        "isMnp": False,
        "operatorName": 'ПАО "Вымпел-Коммуникации"',
        "operatorNameMnp": None,
        "regionName": "Пермский край",
    }
    assert info.country_image == "https://static.ucaller.ru/flag/ru.svg"


async def test_city_from_the_gar_column(directory: PhoneDirectory) -> None:
    info = await directory.lookup("89091100000")
    assert (info.region, info.city) == ("Пермский край", "Пермь")


async def test_mts_moscow_known_only_to_the_registry(directory: PhoneDirectory) -> None:
    # libphonenumber has no carrier for 916; the registry has the holder
    assert directory.lookup_offline("+79161000000").provider == ""
    info = await directory.lookup("+7 916 100-00-00")
    assert (info.provider, info.mnc, info.region, info.city) == ("MTS", 1, "Москва", "Москва")
    assert info.operator == 'ПАО "Мобильные ТелеСистемы"'


async def test_fixed_line_moscow_and_perm(directory: PhoneDirectory) -> None:
    info = await directory.lookup("8 (495) 100-00-00")
    assert info.mobile == 0
    assert info.operator == 'ПАО "Московская городская телефонная сеть"'
    assert (info.region, info.city, info.mnc) == ("Москва", "Москва", 0)
    perm = await directory.lookup("+7 342 300-12-34")
    assert (perm.company, perm.region, perm.city) == ('ООО "Комтехцентр"', "Пермский край", "Пермь")


async def test_number_outside_the_registry_falls_back_to_libphonenumber(
    directory: PhoneDirectory,
) -> None:
    info = await directory.lookup("+7 930 123-45-67")
    assert not info.in_registry
    assert (info.provider, info.mnc, info.company, info.country) == ("MegaFon", 2, "", "Россия")


async def test_mnp_overrides_the_serving_operator(directory: PhoneDirectory) -> None:
    info = await directory.lookup("9091000001")
    assert info.is_mnp
    assert info.operator == 'ПАО "Вымпел-Коммуникации"'  # range holder stays
    assert info.mnp_operator == 'ПАО "МегаФон"'
    assert (info.provider, info.company, info.mnc) == ("MegaFon", 'ПАО "МегаФон"', 2)
    assert info.phone_info_entry()["mnp"] == 'ПАО "МегаФон"'
    assert info.webhook_fields()["operatorNameMnp"] == 'ПАО "МегаФон"'
    assert info.webhook_fields()["isMnp"] is True
    # the neighbour is not ported
    assert not (await directory.lookup("9091000002")).is_mnp
    mts = await directory.lookup("+79161234567")
    assert (mts.provider, mts.mnc) == ("Tele2", 20)


async def test_mnp_file_with_header_and_commas(engine: AsyncEngine, data: Path) -> None:
    directory = PhoneDirectory(engine)
    result = await directory.import_mnp(data / "mnp-comma.csv")
    assert result.rows == 2
    info = await directory.lookup("+79161234567")
    # an OwnerId code is not a known name; the MNC column still tells the operator
    assert (info.mnp_operator, info.provider, info.mnc) == ("mBEELINE", "Beeline", 99)


async def test_mnp_import_replaces_the_table(engine: AsyncEngine, data: Path) -> None:
    directory = PhoneDirectory(engine)
    await directory.import_mnp(data / "mnp.csv")
    assert (await directory.lookup("9091000001")).is_mnp
    await directory.import_mnp(data / "mnp-comma.csv")
    assert not (await directory.lookup("9091000001")).is_mnp
    assert (await directory.lookup("9091000002")).is_mnp


def test_mnp_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "mnp.csv"
    path.write_text("9091000001;ПАО МегаФон\n12345;ПАО МегаФон\n", encoding="utf-8")
    with pytest.raises(RegistryFormatError) as info:
        parse_mnp_file(path)
    assert info.value.line == 2
    path.write_text("number;mnc\n9091000001;02\n", encoding="utf-8")
    with pytest.raises(RegistryFormatError, match="operator column"):
        parse_mnp_file(path)
    path.write_text("9091000001;\n", encoding="utf-8")
    with pytest.raises(RegistryFormatError, match="operator is empty"):
        parse_mnp_file(path)
    path.write_text("9091000001;X;abc\n", encoding="utf-8")
    with pytest.raises(RegistryFormatError, match="MNC"):
        parse_mnp_file(path)


async def test_bad_mnp_file_keeps_the_old_table(
    engine: AsyncEngine, data: Path, tmp_path: Path
) -> None:
    directory = PhoneDirectory(engine)
    await directory.import_mnp(data / "mnp.csv")
    bad = tmp_path / "mnp.csv"
    bad.write_text("9091000002;ПАО МегаФон\nnot-a-number;X\n", encoding="utf-8")
    with pytest.raises(RegistryFormatError):
        await directory.import_mnp(bad)
    assert (await directory.lookup("9091000001")).is_mnp
    assert not (await directory.lookup("9091000002")).is_mnp


@pytest.mark.parametrize(
    ("raw", "iso", "country"),
    [
        ("+77011234567", "KZ", "Казахстан"),
        ("+7 727 300 00 00", "KZ", "Казахстан"),
        ("+375291234567", "BY", "Беларусь"),
        ("+998901234567", "UZ", "Узбекистан"),
        ("+4915123456789", "DE", "Германия"),
        ("+12025550123", "US", "Соединенные Штаты"),
    ],
)
async def test_other_countries(directory: PhoneDirectory, raw: str, iso: str, country: str) -> None:
    info = await directory.lookup(raw)
    assert (info.country_iso, info.country, info.company, info.mnc) == (iso, country, "", 0)
    assert not info.in_registry
    assert info.phone == int(raw.replace("+", "").replace(" ", ""))


async def test_kazakh_numbers_are_not_looked_up_in_the_russian_registry(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # a (fictional) registry row covering 701...: must not turn a Kazakh number Russian
    path = tmp_path / "ABC-7xx.csv"
    path.write_text(
        "АВС/ DEF;От;До;Емкость;Оператор;Регион\n"
        "701;0000000;9999999;10000000;ООО Икс;Пермский край\n",
        encoding="utf-8",
    )
    directory = PhoneDirectory(engine)
    await directory.import_registry([path])
    info = await directory.lookup("+77011234567")
    assert (info.country_iso, info.in_registry, info.provider) == ("KZ", False, "Kcell/Activ")


async def test_registry_makes_unknown_ranges_valid(engine: AsyncEngine, tmp_path: Path) -> None:
    path = tmp_path / "ABC-3xx.csv"
    path.write_text(
        "АВС/ DEF;От;До;Емкость;Оператор;Регион\n"
        "300;0000000;0009999;10000;ООО Новый;Пермский край\n",
        encoding="utf-8",
    )
    directory = PhoneDirectory(engine)
    with pytest.raises(InvalidPhoneNumber):
        await directory.lookup("+7 300 000-00-01")
    await directory.import_registry([path])
    info = await directory.lookup("+7 300 000-00-01")
    assert (info.country_iso, info.country, info.operator, info.mobile) == (
        "RU",
        "Россия",
        "ООО Новый",
        0,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", InvalidReason.EMPTY),
        ("hello", InvalidReason.NOT_A_NUMBER),
        ("12", InvalidReason.TOO_SHORT),
        ("+7 909 100-00-00-00-00-00-0", InvalidReason.TOO_LONG),
        ("+7 000 000-00-00", InvalidReason.NOT_ASSIGNED),
    ],
)
async def test_invalid_numbers(directory: PhoneDirectory, raw: str, reason: InvalidReason) -> None:
    for _ in range(2):  # the second time from the cache
        with pytest.raises(InvalidPhoneNumber) as info:
            await directory.lookup(raw)
        assert info.value.reason is reason


async def test_cache_hits_keep_the_callers_source(directory: PhoneDirectory) -> None:
    first = await directory.lookup("8 (909) 100-00-00")
    second = await directory.lookup("+79091000000")
    stats = directory.cache_stats()
    assert (stats.misses, stats.hits) == (1, 1)
    assert first.source == "8 (909) 100-00-00"
    assert second.source == "+79091000000"
    assert second.phone == first.phone


async def test_import_through_the_directory_drops_the_cache(
    directory: PhoneDirectory, data: Path
) -> None:
    before = await directory.lookup("9091100000")
    assert before.provider == "Beeline"
    await directory.import_registry([data / "DEF-9xx-v2.csv"])
    after = await directory.lookup("9091100000")
    assert (after.provider, after.mnc, after.company) == ("MegaFon", 2, 'ПАО "МегаФон"')
    ported = await directory.lookup("9091000001")
    await directory.import_mnp(data / "mnp-comma.csv")
    assert ported.is_mnp and not (await directory.lookup("9091000001")).is_mnp


async def test_import_by_another_process_is_noticed(engine: AsyncEngine, data: Path) -> None:
    fresh = PhoneDirectory(engine, version_check_s=0)
    slow = PhoneDirectory(engine, version_check_s=3600)
    await import_registry(engine, [data / "DEF-9xx.csv"])  # as the CLI would
    assert (await fresh.lookup("9091100000")).provider == "Beeline"
    assert (await slow.lookup("9091100000")).provider == "Beeline"
    await import_registry(engine, [data / "DEF-9xx-v2.csv"])
    await import_mnp(engine, data / "mnp.csv")
    assert (await fresh.lookup("9091100000")).provider == "MegaFon"
    # within its check interval a directory answers from its cache, by design
    assert (await slow.lookup("9091100000")).provider == "Beeline"
    slow.invalidate()
    assert (await slow.lookup("9091100000")).provider == "MegaFon"


async def test_lru_evicts_the_oldest(engine: AsyncEngine) -> None:
    directory = PhoneDirectory(engine, cache_size=2)
    for raw in ("+79091000000", "+79091000001", "+79091000002", "+79091000000"):
        await directory.lookup(raw)
    stats = directory.cache_stats()
    assert (stats.size, stats.hits, stats.misses) == (2, 0, 4)


def test_phone_info_is_immutable(engine: AsyncEngine) -> None:
    info: PhoneInfo = PhoneDirectory(engine).lookup_offline("+79091000000")
    with pytest.raises(AttributeError):
        info.phone = 1  # type: ignore[misc]
