"""Passwords: one policy for every place a password is set, and hashing with argon2id.

The policy follows NIST SP 800-63B §5.1.1.2: a minimum length, a generous maximum (so hashing
stays cheap: argon2 reads the whole input), and a refusal of passwords found in breach lists.
The list shipped in ``data/common-passwords.txt.gz`` holds the 8-to-128-character entries of a
public list of the 20,000 most common passwords, lower-cased.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 128

_hasher = PasswordHasher()


class WeakPassword(ValueError):
    """The password breaks the policy; the message says how, in English."""


@functools.cache
def _common() -> frozenset[str]:
    raw = resources.files(__package__).joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(raw).decode().split())


def check_password(password: str, *, email: str = "") -> None:
    """Raise :class:`WeakPassword` unless ``password`` may be set."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password must be at most {MAX_LENGTH} characters long.")
    lowered = password.lower()
    local = email.lower().partition("@")[0]
    if lowered in _common() or (local and lowered in (email.lower(), local)):
        raise WeakPassword("This password is too common. Choose another one.")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash or len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
