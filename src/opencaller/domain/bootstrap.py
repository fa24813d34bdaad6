"""What a new database gets: the default tariff and, for `serve`, a demo account and service."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..storage.database import Database
from ..storage.tables import accounts, services
from . import billing
from .accounts import create_account, create_service, log_action
from .money import to_units
from .passwords import hash_password


@dataclass(frozen=True, slots=True)
class Demo:
    email: str
    password: str | None  # only known when the account was just created
    service_id: int
    key: str
    created: bool


async def ensure_tariff(db: Database, now: float) -> int:
    try:
        async with db.write() as conn:
            return await billing.ensure_default_tariff(conn, now)
    except IntegrityError:  # several nodes started at once and another one made it
        async with db.write() as conn:
            return await billing.ensure_default_tariff(conn, now)


async def ensure_demo(db: Database, *, email: str, balance_rub: float, now: float) -> Demo:
    tariff_id = await ensure_tariff(db, now)
    async with db.write() as conn:
        account_id = (
            await conn.execute(select(accounts.c.id).where(accounts.c.email == email))
        ).scalar()
        if account_id is not None:
            row = (
                await conn.execute(
                    select(services.c.id, services.c.secret_key)
                    .where(services.c.account_id == account_id)
                    .order_by(services.c.id)
                    .limit(1)
                )
            ).first()
            if row is not None:
                return Demo(email, None, int(row.id), row.secret_key, created=False)
            sid, key = await create_service(conn, account_id=account_id, name="Demo", now=now)
            return Demo(email, None, sid, key, created=False)
        password = secrets.token_urlsafe(9)
        account_id = await create_account(
            conn,
            email=email,
            now=now,
            password_hash=hash_password(password),
            tariff_id=tariff_id,
            phone="79000000001",
            phone_verified=True,
        )
        await billing.adjust(
            conn,
            account_id,
            to_units(balance_rub),
            now=now,
            actor="bootstrap",
            reason="demo balance",
        )
        await log_action(conn, account_id, "account created", now=now)
        sid, key = await create_service(
            conn, account_id=account_id, name="Demo", use_direction="Trying opencaller", now=now
        )
        return Demo(email, password, sid, key, created=True)
