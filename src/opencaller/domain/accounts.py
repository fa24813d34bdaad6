"""Accounts, services and their secret keys."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..storage.tables import account_logs, accounts, services
from .settings import ServiceSettings

_KEY_ALPHABET = string.ascii_letters + string.digits


def new_secret_key() -> str:
    """32 random characters, as uCaller keys are (clients check the length)."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))


@dataclass(frozen=True, slots=True)
class Service:
    id: int
    account_id: int
    name: str
    use_direction: str
    secret_key: str
    enabled: bool
    archived: bool
    test_mode: bool
    settings: ServiceSettings
    created_at: float
    last_request_at: float | None
    status_url: str | None = None  # status events go here (domain/status_events.py)

    @classmethod
    def from_row(cls, row: Any) -> Service:
        m = row._mapping
        return cls(
            id=m["id"],
            account_id=m["account_id"],
            name=m["name"],
            use_direction=m["use_direction"],
            secret_key=m["secret_key"],
            enabled=bool(m["enabled"]),
            archived=bool(m["archived"]),
            test_mode=bool(m["test_mode"]),
            settings=ServiceSettings.model_validate(m["settings"] or {}),
            created_at=m["created_at"],
            last_request_at=m["last_request_at"],
            status_url=m.get("status_url"),
        )


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str
    telegram_id: int | None
    two_auth: bool
    phone: str | None
    phone_verified: bool
    blocked: bool
    is_admin: bool
    tariff_id: int | None
    balance: int
    bonus_balance: int
    created_at: float
    updated_at: float
    low_balance_alert: int | None = None  # money units; None: the installation's default

    @classmethod
    def from_row(cls, row: Any) -> Account:
        m = row._mapping
        return cls(
            id=m["id"],
            email=m["email"],
            telegram_id=m["telegram_id"],
            two_auth=bool(m["two_auth"]),
            phone=m["phone"],
            phone_verified=bool(m["phone_verified"]),
            blocked=bool(m["blocked"]),
            is_admin=bool(m["is_admin"]),
            tariff_id=m["tariff_id"],
            balance=m["balance"],
            bonus_balance=m["bonus_balance"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            low_balance_alert=m.get("low_balance_alert"),
        )


async def get_service(conn: AsyncConnection, service_id: int) -> Service | None:
    row = (await conn.execute(select(services).where(services.c.id == service_id))).first()
    return Service.from_row(row) if row else None


async def get_account(conn: AsyncConnection, account_id: int) -> Account | None:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
    return Account.from_row(row) if row else None


async def get_account_by_email(conn: AsyncConnection, email: str) -> Account | None:
    q = select(accounts).where(accounts.c.email == email.strip().lower())
    row = (await conn.execute(q)).first()
    return Account.from_row(row) if row else None


async def create_account(
    conn: AsyncConnection,
    *,
    email: str,
    now: float,
    password_hash: str = "",
    tariff_id: int | None = None,
    is_admin: bool = False,
    phone: str | None = None,
    phone_verified: bool = False,
) -> int:
    result = await conn.execute(
        insert(accounts)
        .values(
            email=email.strip().lower(),
            password_hash=password_hash,
            tariff_id=tariff_id,
            is_admin=is_admin,
            phone=phone,
            phone_verified=phone_verified,
            two_auth=False,
            blocked=False,
            balance=0,
            bonus_balance=0,
            created_at=now,
            updated_at=now,
        )
        .returning(accounts.c.id)
    )
    return int(result.scalar_one())


async def password_hash_of(conn: AsyncConnection, account_id: int) -> str:
    q = select(accounts.c.password_hash).where(accounts.c.id == account_id)
    return str((await conn.execute(q)).scalar_one())


async def totp_secret_of(conn: AsyncConnection, account_id: int) -> str | None:
    """The account's TOTP secret while two-factor sign-in is on, else None."""
    q = select(accounts.c.totp_secret).where(accounts.c.id == account_id)
    found = (await conn.execute(q)).scalar()
    return str(found) if found else None


async def set_password(
    conn: AsyncConnection, account_id: int, password_hash: str, *, now: float
) -> None:
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(password_hash=password_hash, updated_at=now)
    )


async def set_low_balance_alert(
    conn: AsyncConnection, account_id: int, threshold: int | None, *, now: float
) -> None:
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(low_balance_alert=threshold, updated_at=now)
    )


async def log_action(
    conn: AsyncConnection,
    account_id: int,
    action: str,
    *,
    now: float,
    ip: str = "",
    user_agent: str = "",
) -> None:
    await conn.execute(
        insert(account_logs).values(
            account_id=account_id,
            action=action,
            ip=ip,
            user_agent=user_agent[:512],
            created_at=now,
        )
    )


async def create_service(
    conn: AsyncConnection,
    *,
    account_id: int,
    name: str,
    now: float,
    use_direction: str = "",
    settings: ServiceSettings | None = None,
    test_mode: bool = False,
) -> tuple[int, str]:
    key = new_secret_key()
    result = await conn.execute(
        insert(services)
        .values(
            account_id=account_id,
            name=name,
            use_direction=use_direction,
            secret_key=key,
            enabled=True,
            archived=False,
            test_mode=test_mode,
            # a new service starts with geo-permissions (docs/antifraud.md)
            settings=(settings or ServiceSettings(geo_restricted=True)).model_dump(),
            created_at=now,
        )
        .returning(services.c.id)
    )
    return int(result.scalar_one()), key


async def regenerate_key(conn: AsyncConnection, service_id: int) -> str:
    key = new_secret_key()
    await conn.execute(update(services).where(services.c.id == service_id).values(secret_key=key))
    return key


async def update_service(conn: AsyncConnection, service_id: int, **values: Any) -> None:
    if "settings" in values and isinstance(values["settings"], ServiceSettings):
        values["settings"] = values["settings"].model_dump()
    await conn.execute(update(services).where(services.c.id == service_id).values(**values))
