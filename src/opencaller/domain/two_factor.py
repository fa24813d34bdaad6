"""The second factor: TOTP codes that work once, and single-use recovery codes.

A TOTP code stays valid for its 30-second step and, to allow for clock drift, the steps either
side. RFC 6238 §5.2 asks the verifier to accept a code only once: the last accepted step is
kept per account and moved forward with one conditional UPDATE, so two simultaneous sign-ins
with the same code cannot both pass.

Recovery codes are random (50 bits each), so a plain SHA-256 of the code keyed to the account
is enough to keep them useless if the table leaks; spending one is one conditional UPDATE too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyotp
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..storage.dashboard_tables import recovery_codes as rc
from ..storage.tables import accounts

RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)


def normalize_code(raw: str) -> str:
    return "".join(raw.split()).replace("-", "").lower()


async def verify_totp(
    conn: AsyncConnection, account_id: int, secret: str, code: str, *, now: float
) -> bool:
    """True once per time step for the right code; a replayed code is refused."""
    code = normalize_code(code)
    totp = pyotp.TOTP(secret)
    for drift in (0, -1, 1):
        at = now + drift * totp.interval
        if hmac.compare_digest(totp.at(at), code):
            step = totp.timecode(at)
            result = await conn.execute(
                update(accounts)
                .where(
                    accounts.c.id == account_id,
                    or_(accounts.c.totp_last_step.is_(None), accounts.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
            return bool(result.rowcount)
    return False


def _hash(account_id: int, code: str) -> str:
    return hashlib.sha256(f"{account_id}:{normalize_code(code)}".encode()).hexdigest()


async def new_recovery_codes(conn: AsyncConnection, account_id: int, *, now: float) -> list[str]:
    """Replace the account's recovery codes; the plain codes are shown once and never again."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    await conn.execute(delete(rc).where(rc.c.account_id == account_id))
    await conn.execute(
        rc.insert(),
        [
            {"account_id": account_id, "code_hash": _hash(account_id, c), "created_at": now}
            for c in codes
        ],
    )
    return codes


async def use_recovery_code(
    conn: AsyncConnection, account_id: int, code: str, *, now: float
) -> bool:
    result = await conn.execute(
        update(rc)
        .where(
            rc.c.account_id == account_id,
            rc.c.code_hash == _hash(account_id, code),
            rc.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def recovery_codes_left(conn: AsyncConnection, account_id: int) -> int:
    q = select(func.count()).where(rc.c.account_id == account_id, rc.c.used_at.is_(None))
    return int((await conn.execute(q)).scalar_one())


async def drop_recovery_codes(conn: AsyncConnection, account_id: int) -> None:
    await conn.execute(delete(rc).where(rc.c.account_id == account_id))


async def turn_on(conn: AsyncConnection, account_id: int, secret: str, *, now: float) -> list[str]:
    """Two-factor sign-in on with ``secret``; returns the new recovery codes (shown once)."""
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(totp_secret=secret, two_auth=True, totp_last_step=None, updated_at=now)
    )
    return await new_recovery_codes(conn, account_id, now=now)


async def turn_off(conn: AsyncConnection, account_id: int, *, now: float) -> None:
    """Two-factor sign-in off: the secret and the recovery codes are gone."""
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(totp_secret=None, two_auth=False, totp_last_step=None, updated_at=now)
    )
    await drop_recovery_codes(conn, account_id)
