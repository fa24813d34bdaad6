"""What an account sees of itself through the API: its balance with its tariff, and the
latest entries of its action log (``getBalance``, ``getAccount``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..storage.database import Database
from ..storage.tables import account_logs, tariffs
from .accounts import Account, get_account

LOG_ENTRIES = 50  # the latest actions getAccount shows


@dataclass(frozen=True, slots=True)
class Balance:
    account: Account
    tariff_code: str  # "" when the account has no tariff
    tariff_name: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    action: str
    user_agent: str
    ip: str
    created_at: float


async def balance(db: Database, account_id: int) -> Balance:
    async with db.read() as conn:
        account = await get_account(conn, account_id)
        assert account is not None  # the caller was authenticated as this account
        q = select(tariffs.c.code, tariffs.c.name).where(tariffs.c.id == account.tariff_id)
        tariff = (await conn.execute(q)).first()
    code, name = (tariff.code, tariff.name) if tariff else ("", "")
    return Balance(account, code, name)


async def with_log(db: Database, account_id: int) -> tuple[Account, list[LogEntry]]:
    async with db.read() as conn:
        account = await get_account(conn, account_id)
        assert account is not None  # the caller was authenticated as this account
        rows = (
            await conn.execute(
                select(account_logs)
                .where(account_logs.c.account_id == account.id)
                .order_by(account_logs.c.id.desc())
                .limit(LOG_ENTRIES)
            )
        ).all()
    return account, [LogEntry(r.action, r.user_agent, r.ip, r.created_at) for r in rows]
