"""Parsing of human phone input into E.164 (no database)."""

from __future__ import annotations

import pytest

from opencaller.numbering import InvalidPhoneNumber, InvalidReason, parse_phone
from opencaller.numbering.lookup import describe


@pytest.mark.parametrize(
    "raw",
    [
        "8 (909) 100-00-00",
        "+7 909 1000000",
        "+7 (909) 100-00-00",
        "9091000000",
        "79091000000",
        "89091000000",
        79091000000,
        " +7-909-100-00-00 ",
        "7 909 100 00 00",  # "+" decoded as a space by a form parser
        "+7\u00a0909\u00a0100\u201100\u201100",  # no-break spaces and a non-breaking hyphen
    ],
)
def test_russian_mobile_variants(raw: object) -> None:
    p = parse_phone(raw)
    assert p.e164 == "79091000000"
    assert p.phone == 79091000000
    assert (p.country_code, p.national_number, p.region) == (7, 9091000000, "RU")
    assert p.valid and p.is_mobile
    assert p.format_international() == "+7 909 100-00-00"


def test_source_is_kept_as_received() -> None:
    assert parse_phone("8 (909) 100-00-00").source == "8 (909) 100-00-00"
    assert parse_phone(79091000000).source == "79091000000"


def test_russian_fixed_line() -> None:
    p = parse_phone("8 495 100-00-00")
    assert p.e164 == "74951000000"
    assert p.region == "RU"
    assert not p.is_mobile


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+77011234567", "77011234567"),  # Kcell mobile
        ("77011234567", "77011234567"),
        ("8 701 123 45 67", "77011234567"),
        ("+7 727 300 00 00", "77273000000"),  # Almaty fixed line
        ("+7 7172 12 34 56", "77172123456"),  # Astana fixed line
    ],
)
def test_kazakh_numbers_share_plus_seven(raw: str, e164: str) -> None:
    p = parse_phone(raw)
    assert p.e164 == e164
    assert p.country_code == 7
    assert p.region == "KZ"


@pytest.mark.parametrize(
    ("raw", "e164", "region", "mobile"),
    [
        ("+375 29 123-45-67", "375291234567", "BY", True),
        ("375291234567", "375291234567", "BY", True),  # the documented form: digits, no "+"
        ("+998 90 123 45 67", "998901234567", "UZ", True),
        ("998901234567", "998901234567", "UZ", True),
        ("+49 1512 3456789", "4915123456789", "DE", True),
        ("0049 30 1234567", "49301234567", "DE", False),
        ("+1 (202) 555-0123", "12025550123", "US", True),  # fixed-or-mobile counts as mobile
        ("12025550123", "12025550123", "US", True),
        ("810 375 29 123-45-67", "375291234567", "BY", True),  # Russian international prefix
    ],
)
def test_other_countries(raw: str, e164: str, region: str, mobile: bool) -> None:
    p = parse_phone(raw)
    assert (p.e164, p.region, p.is_mobile) == (e164, region, mobile)


def test_without_default_region_only_international_forms() -> None:
    assert parse_phone("79091000000", None).e164 == "79091000000"
    with pytest.raises(InvalidPhoneNumber):
        parse_phone("89091000000", None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", InvalidReason.EMPTY),
        ("   ", InvalidReason.EMPTY),
        (None, InvalidReason.EMPTY),
        ("abc", InvalidReason.NOT_A_NUMBER),
        ("+7 909 ABC-00-00", InvalidReason.NOT_A_NUMBER),
        ("7909100000O", InvalidReason.NOT_A_NUMBER),  # letter O instead of zero
        ("+7+9091000000", InvalidReason.NOT_A_NUMBER),
        (True, InvalidReason.NOT_A_NUMBER),
        ([79091000000], InvalidReason.NOT_A_NUMBER),
        ("123", InvalidReason.TOO_SHORT),
        ("+7 909 100", InvalidReason.TOO_SHORT),
        ("+7909100000", InvalidReason.TOO_SHORT),
        ("7909100000012345678", InvalidReason.TOO_LONG),
        ("1" * 80, InvalidReason.TOO_LONG),
        ("+999 123456789", InvalidReason.INVALID_COUNTRY_CODE),
        ("+7 000 000-00-00", InvalidReason.NOT_ASSIGNED),
    ],
)
def test_invalid_input(raw: object, reason: InvalidReason) -> None:
    with pytest.raises(InvalidPhoneNumber) as info:
        parse_phone(raw)
    assert info.value.reason is reason
    assert info.value.message  # a sentence an operator can read


def test_not_strict_keeps_possible_but_unknown_numbers() -> None:
    p = parse_phone("+7 000 000-00-00", strict=False)
    assert p.e164 == "70000000000"
    assert not p.valid


def test_describe_without_database() -> None:
    info = describe("8 (909) 100-00-00")
    assert info.phone == 79091000000
    assert info.country_iso == "RU"
    assert info.country == "Россия"
    assert info.provider == "Beeline"
    assert info.mnc == 99
    assert info.mobile == 1
    assert info.phone_format == "+7 909 100-00-00"
    assert not info.in_registry

    kz = describe("+77011234567")
    assert (kz.country_iso, kz.country, kz.mnc) == ("KZ", "Казахстан", 0)
    assert describe("+375291234567").country == "Беларусь"
    assert describe("+998901234567").country == "Узбекистан"
    assert describe("+4915123456789").country == "Германия"
    assert describe("+12025550123").country_code == 1
