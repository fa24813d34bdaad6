"""Opening an account: one path for sign-up, the operator's form and the CLI."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from . import billing
from .accounts import create_account, get_account_by_email


class AccountExists(ValueError):
    """An account with this e-mail exists already."""


async def open_account(
    conn: AsyncConnection,
    *,
    email: str,
    password_hash: str,
    now: float,
    is_admin: bool = False,
    balance: int = 0,
    actor: str = "",
) -> int:
    """A new account on the default tariff, with its starting balance in the ledger."""
    if await get_account_by_email(conn, email) is not None:
        raise AccountExists(email)
    tariff_id = await billing.ensure_default_tariff(conn, now)
    account_id = await create_account(
        conn,
        email=email,
        now=now,
        password_hash=password_hash,
        tariff_id=tariff_id,
        is_admin=is_admin,
    )
    if balance:
        await billing.adjust(
            conn, account_id, balance, now=now, actor=actor, reason="starting balance"
        )
    return account_id
