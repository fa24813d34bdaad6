"""Phone standardisation and lookup: parsing, the Russian numbering plan registry, MNP."""

from opencaller.numbering.lookup import CacheStats, PhoneDirectory, PhoneInfo, describe, flag_url
from opencaller.numbering.parse import (
    InvalidPhoneNumber,
    InvalidReason,
    ParsedPhone,
    normalize_phone,
    parse_phone,
)
from opencaller.numbering.registry import ImportResult, RegistryFormatError

__all__ = [
    "CacheStats",
    "ImportResult",
    "InvalidPhoneNumber",
    "InvalidReason",
    "ParsedPhone",
    "PhoneDirectory",
    "PhoneInfo",
    "RegistryFormatError",
    "describe",
    "flag_url",
    "normalize_phone",
    "parse_phone",
]
