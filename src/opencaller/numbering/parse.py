"""Turn whatever a client sends as ``phone`` into an E.164 number, or say why it can't.

Accepted: a JSON number or a string with ASCII digits and the punctuation people type around
them (spaces, ``+``, ``-``, ``(``, ``)``, ``.``, ``,``, ``/``, no-break space, Unicode dashes).
Digits of other scripts (Arabic-Indic, full-width, superscript ...) are not digits here: one
number must have one spelling, or the per-number limits could be dodged. Without a ``+`` the
input is read the way uCaller documents it (digits with the country code, e.g.
``79091000000``) unless it only makes sense as a national number of ``default_region``
(``89091000000``, ``9091000000``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType

DEFAULT_REGION = "RU"
MAX_INPUT_CHARS = 64  # longer text is not a phone number; don't hand it to the parser

# re.ASCII: \s is ASCII whitespace only; the no-break space and the dashes are named.
_ALLOWED = re.compile(r"[0-9\s+\-().,/\u00a0\u2010-\u2015]+", re.ASCII)
_NON_DIGITS = re.compile(r"[^0-9]")


class InvalidReason(StrEnum):
    EMPTY = "empty"
    NOT_A_NUMBER = "not_a_number"  # letters or other characters that never occur in a number
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    INVALID_COUNTRY_CODE = "invalid_country_code"
    INVALID_LENGTH = "invalid_length"  # right size for no numbering plan of that country
    NOT_ASSIGNED = "not_assigned"  # plausible length, but no such range in the country's plan


_MESSAGES = {
    InvalidReason.EMPTY: "phone number is empty",
    InvalidReason.NOT_A_NUMBER: "phone number contains characters other than digits",
    InvalidReason.TOO_SHORT: "phone number is too short",
    InvalidReason.TOO_LONG: "phone number is too long",
    InvalidReason.INVALID_COUNTRY_CODE: "unknown country code",
    InvalidReason.INVALID_LENGTH: "phone number has a wrong length for its country",
    InvalidReason.NOT_ASSIGNED: "no such number range in the country's numbering plan",
}


class InvalidPhoneNumber(ValueError):
    """The input is not a usable phone number; ``reason`` says why."""

    def __init__(self, source: str, reason: InvalidReason) -> None:
        self.source = source
        self.reason = reason
        self.message = _MESSAGES[reason]
        super().__init__(f"{self.message}: {source!r}")


@dataclass(frozen=True, slots=True)
class ParsedPhone:
    source: str  # the input as one string, as received
    e164: str  # digits only, no "+": "79091000000"
    country_code: int  # 7
    national_number: int  # 9091000000
    region: str  # ISO 3166-1 alpha-2, "" for non-geographic codes (+800, +882 ...)
    valid: bool  # matches a range of the libphonenumber metadata
    number: PhoneNumber

    @property
    def phone(self) -> int:
        return int(self.e164)

    @property
    def number_type(self) -> int:
        """A ``phonenumbers.PhoneNumberType`` value."""
        return int(phonenumbers.number_type(self.number))

    @property
    def is_mobile(self) -> bool:
        # FIXED_LINE_OR_MOBILE (US, CA ...) cannot be told apart; a call may well reach a mobile.
        return self.number_type in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)

    def format_international(self) -> str:
        return phonenumbers.format_number(self.number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _as_text(raw: object) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bool):  # bool is an int; True is not a phone number
        raise InvalidPhoneNumber(str(raw), InvalidReason.NOT_A_NUMBER)
    if isinstance(raw, int):
        if raw < 0:
            raise InvalidPhoneNumber(str(raw), InvalidReason.NOT_A_NUMBER)
        if raw >= 10**MAX_INPUT_CHARS:
            raise InvalidPhoneNumber("(a number too long to show)", InvalidReason.TOO_LONG)
        return str(raw)
    if isinstance(raw, float):
        if raw.is_integer() and 0 < raw < 1e20:
            return str(int(raw))
        raise InvalidPhoneNumber(str(raw), InvalidReason.NOT_A_NUMBER)
    if isinstance(raw, str):
        return raw
    raise InvalidPhoneNumber(repr(raw), InvalidReason.NOT_A_NUMBER)


_POSSIBLE_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: InvalidReason.TOO_SHORT,
    phonenumbers.ValidationResult.TOO_LONG: InvalidReason.TOO_LONG,
    phonenumbers.ValidationResult.INVALID_LENGTH: InvalidReason.INVALID_LENGTH,
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: InvalidReason.INVALID_COUNTRY_CODE,
}

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: InvalidReason.INVALID_COUNTRY_CODE,
    NumberParseException.NOT_A_NUMBER: InvalidReason.NOT_A_NUMBER,
    NumberParseException.TOO_SHORT_AFTER_IDD: InvalidReason.TOO_SHORT,
    NumberParseException.TOO_SHORT_NSN: InvalidReason.TOO_SHORT,
    NumberParseException.TOO_LONG: InvalidReason.TOO_LONG,
}


def _try(text: str, region: str | None) -> PhoneNumber | InvalidReason:
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        return _PARSE_REASONS.get(exc.error_type, InvalidReason.NOT_A_NUMBER)
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible in _POSSIBLE_REASONS:
        return _POSSIBLE_REASONS[possible]
    return number


def parse_phone(
    raw: object, default_region: str | None = DEFAULT_REGION, *, strict: bool = True
) -> ParsedPhone:
    """Parse ``raw`` into a :class:`ParsedPhone` or raise :class:`InvalidPhoneNumber`.

    With ``strict=False`` a number of a possible length that libphonenumber does not know as
    assigned is returned with ``valid=False`` (the directory then asks the imported registry).
    """
    source = _as_text(raw)
    text = source.strip()
    digits = _digits_of(source, text)
    return _pick(source, _candidates(text, digits, default_region), strict=strict)


def _digits_of(source: str, text: str) -> str:
    """The digits of ``text``, or :class:`InvalidPhoneNumber` when it cannot be a number."""
    if not text:
        raise InvalidPhoneNumber(source, InvalidReason.EMPTY)
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidPhoneNumber(source, InvalidReason.TOO_LONG)
    if not _ALLOWED.fullmatch(text):
        raise InvalidPhoneNumber(source, InvalidReason.NOT_A_NUMBER)
    digits = _NON_DIGITS.sub("", text)
    if not digits:
        raise InvalidPhoneNumber(source, InvalidReason.NOT_A_NUMBER)
    if "+" in text[1:]:  # "+7 +7 909..." or "7+909": a typo, not something to guess at
        raise InvalidPhoneNumber(source, InvalidReason.NOT_A_NUMBER)
    return digits


def _candidates(
    text: str, digits: str, default_region: str | None
) -> list[tuple[str, str | None]]:
    """The readings of the number to try, in order: ``(text, region)`` for libphonenumber."""
    international = ("+" + digits, None)
    if text.startswith("+"):
        return [international]
    if digits.startswith("00"):  # the international prefix used in most of Europe
        return [("+" + digits[2:], None)]
    if default_region is None:
        return [international]
    national = (digits, default_region)
    own_code = str(phonenumbers.country_code_for_region(default_region))
    # "79091000000" is the documented uCaller form; "9091000000" and "89091000000" are
    # national numbers that would otherwise be misread as +90..., +8...
    if digits.startswith(own_code):
        return [international, national]
    return [national, international]


def _pick(source: str, candidates: list[tuple[str, str | None]], *, strict: bool) -> ParsedPhone:
    """The first reading libphonenumber knows as valid; else, when not ``strict``, the first of
    a possible length; else :class:`InvalidPhoneNumber` with the first reason found."""
    first_failure: InvalidReason | None = None
    fallback: PhoneNumber | None = None
    for candidate, region in candidates:
        result = _try(candidate, region)
        if isinstance(result, InvalidReason):
            first_failure = first_failure or result
            continue
        if phonenumbers.is_valid_number(result):
            return _result(source, result, valid=True)
        first_failure = first_failure or InvalidReason.NOT_ASSIGNED
        fallback = fallback or result
    if fallback is not None and not strict:
        return _result(source, fallback, valid=False)
    raise InvalidPhoneNumber(source, first_failure or InvalidReason.NOT_A_NUMBER)


def _result(source: str, number: PhoneNumber, *, valid: bool) -> ParsedPhone:
    country_code = int(number.country_code or 0)
    national = int(number.national_number or 0)
    region = phonenumbers.region_code_for_number(number) or ""
    if region == phonenumbers.UNKNOWN_REGION or region == "001":
        region = ""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    return ParsedPhone(
        source=source,
        e164=e164,
        country_code=country_code,
        national_number=national,
        region=region,
        valid=valid,
        number=number,
    )


def normalize_phone(raw: object, default_region: str | None = DEFAULT_REGION) -> str:
    """E.164 digits without "+" (``"79091000000"``); raises :class:`InvalidPhoneNumber`."""
    return parse_phone(raw, default_region).e164
