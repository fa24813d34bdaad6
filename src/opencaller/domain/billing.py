"""Tariffs, charges and refunds. Every balance change is one UPDATE plus one ledger row.

A new authorization's charge is written with its row by domain/new_authorizations.py (on
PostgreSQL in one statement); it takes ``TAKE``'s condition and ``charge_reason`` from here.

The charge is ``UPDATE accounts SET balance = balance - :p WHERE id = :a AND balance >= :p``:
the row lock of that UPDATE makes racing charges queue, and the condition makes the balance
never go below zero, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Float,
    String,
    bindparam,
    cast,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ..storage.statements import first, rows
from ..storage.tables import accounts, ledger, tariff_prices, tariffs
from .money import to_units

DEFAULT_TARIFF = ("uni", "Единый")
# Default prices in roubles per channel, used when a new database is set up.
DEFAULT_PRICES = {
    "flash": "0.30",
    "mix": "0.30",
    "voice": "2.00",
    "lookup": "0.04",
    "inbound": "0.30",
}
CHANNELS = tuple(DEFAULT_PRICES)
# The columns a charge's ledger row is written with, in the order statements select them.
LEDGER_COLUMNS = [
    "account_id",
    "kind",
    "amount",
    "balance_after",
    "authorization_id",
    "channel",
    "actor",
    "reason",
    "created_at",
]


async def ensure_default_tariff(conn: AsyncConnection, now: float) -> int:
    code, name = DEFAULT_TARIFF
    existing = (await conn.execute(select(tariffs.c.id).where(tariffs.c.code == code))).scalar()
    if existing is not None:
        return int(existing)
    tid = (
        await conn.execute(
            insert(tariffs).values(code=code, name=name, created_at=now).returning(tariffs.c.id)
        )
    ).scalar_one()
    for channel, price in DEFAULT_PRICES.items():
        await conn.execute(
            insert(tariff_prices).values(
                tariff_id=tid, channel=channel, country_iso="*", price=to_units(price)
            )
        )
    return int(tid)


async def price_of(
    conn: AsyncConnection, tariff_id: int | None, channel: str, country_iso: str
) -> int:
    """The price for the country if the tariff has one, else the tariff's default, else 0."""
    if tariff_id is None:
        return 0
    rows = (
        await conn.execute(
            select(tariff_prices.c.country_iso, tariff_prices.c.price).where(
                tariff_prices.c.tariff_id == tariff_id,
                tariff_prices.c.channel == channel,
                tariff_prices.c.country_iso.in_([country_iso or "*", "*"]),
            )
        )
    ).all()
    by_country = {r.country_iso: r.price for r in rows}
    return int(by_country.get(country_iso, by_country.get("*", 0)))


async def set_price(
    conn: AsyncConnection, tariff_id: int, channel: str, country_iso: str, price: int
) -> None:
    updated = await conn.execute(
        update(tariff_prices)
        .where(
            tariff_prices.c.tariff_id == tariff_id,
            tariff_prices.c.channel == channel,
            tariff_prices.c.country_iso == country_iso,
        )
        .values(price=price)
    )
    if updated.rowcount == 0:
        await conn.execute(
            insert(tariff_prices).values(
                tariff_id=tariff_id, channel=channel, country_iso=country_iso, price=price
            )
        )


# A charge's ledger reason names its channel and authorization ("flash #42"); every write
# path takes it from here, as Python (``charge_reason``) or as SQL (``charge_reason_sql``).
_REASON_SEPARATOR = " #"


def charge_reason(channel: str, authorization_id: int | None) -> str:
    return f"{channel}{_REASON_SEPARATOR}{authorization_id}" if authorization_id else channel


def charge_reason_sql(channel: ColumnElement[Any], authorization_id: ColumnElement[Any]) -> Any:
    """``charge_reason`` computed by the database, for statements that learn the id as they
    insert the row (``||`` on both engines)."""
    return channel + literal(_REASON_SEPARATOR) + cast(authorization_id, String)


# The balance taken only if it covers the amount: racing charges queue on the row's lock, and
# the balance never goes below zero.
TAKE = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("account", type_=BigInteger),
        accounts.c.balance >= bindparam("amount", type_=BigInteger),
    )
    .values(
        balance=accounts.c.balance - bindparam("amount", type_=BigInteger),
        updated_at=bindparam("now", type_=Float),
    )
    .returning(accounts.c.balance)
)


# Built once: building a statement costs more than running it.
_RECORD = insert(ledger).values({c: bindparam(c) for c in LEDGER_COLUMNS})


def take(conn: Connection, account_id: int, amount: int, *, now: float) -> int | None:
    """Take ``amount`` from the balance: the new balance, or None if it does not cover it.
    The caller records the ledger row (``record_charge``) in the same transaction."""
    taken = first(conn, TAKE, {"account": account_id, "amount": amount, "now": now})
    return None if taken is None else int(taken["balance"])


def record_charge(
    conn: Connection,
    account_id: int,
    amount: int,
    balance_after: int,
    *,
    now: float,
    authorization_id: int | None,
    channel: str,
) -> None:
    entry = {
        "account_id": account_id,
        "kind": "charge",
        "amount": -amount,
        "balance_after": balance_after,
        "authorization_id": authorization_id,
        "channel": channel,
        "actor": "system",
        "reason": charge_reason(channel, authorization_id),
        "created_at": now,
    }
    rows(conn, _RECORD, entry)


def charge_in(
    conn: Connection,
    account_id: int,
    amount: int,
    *,
    now: float,
    channel: str,
    authorization_id: int | None = None,
) -> int | None:
    """Take ``amount`` and record the ledger row; the new balance, or None (and nothing
    written) if it does not cover it."""
    after = take(conn, account_id, amount, now=now)
    if after is not None:
        record_charge(
            conn,
            account_id,
            amount,
            after,
            now=now,
            authorization_id=authorization_id,
            channel=channel,
        )
    return after


async def charge(
    conn: AsyncConnection,
    account_id: int,
    amount: int,
    *,
    now: float,
    channel: str,
    authorization_id: int | None = None,
) -> int | None:
    """``charge_in`` within an open async transaction."""
    return await conn.run_sync(
        charge_in, account_id, amount, now=now, channel=channel, authorization_id=authorization_id
    )


async def balance_of(conn: AsyncConnection, account_id: int) -> int:
    q = select(accounts.c.balance).where(accounts.c.id == account_id)
    return int((await conn.execute(q)).scalar_one())


async def credit(
    conn: AsyncConnection,
    account_id: int,
    amount: int,
    *,
    kind: str,
    now: float,
    actor: str = "system",
    reason: str = "",
    authorization_id: int | None = None,
    channel: str | None = None,
) -> int:
    """Add (or, for a negative correction, subtract) money; returns the new balance.

    The one write of every credit (top-ups, corrections, refunds): the balance and its
    ledger row, in the caller's transaction. Charges go through ``charge``."""
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(balance=accounts.c.balance + amount, updated_at=now)
        .returning(accounts.c.balance)
    )
    after = int(result.scalar_one())
    await conn.execute(
        insert(ledger).values(
            account_id=account_id,
            kind=kind,
            amount=amount,
            balance_after=after,
            authorization_id=authorization_id,
            channel=channel,
            actor=actor,
            reason=reason,
            created_at=now,
        )
    )
    return after


# -- what the ledger says: every credit's reason is written here -----------------------------


def refund_reason(authorization_id: int) -> str:
    return f"not reached #{authorization_id}"


def adjustment_kind(amount: int, *, correction: bool = False) -> str:
    """An operator's change of a balance: money added is a top-up unless they call it a
    correction; money taken off is always a correction."""
    return "topup" if amount >= 0 and not correction else "correction"


async def refund(
    conn: AsyncConnection,
    account_id: int,
    amount: int,
    *,
    now: float,
    authorization_id: int,
    channel: str,
) -> int:
    """Give back what a call that did not reach the subscriber cost (docs/compatibility.md);
    the caller marks the authorization refunded in the same transaction."""
    return await credit(
        conn,
        account_id,
        amount,
        kind="refund",
        now=now,
        authorization_id=authorization_id,
        channel=channel,
        reason=refund_reason(authorization_id),
    )


async def adjust(
    conn: AsyncConnection,
    account_id: int,
    amount: int,
    *,
    now: float,
    actor: str,
    reason: str,
    correction: bool = False,
) -> int:
    """An operator's top-up or correction (dashboard, command line, set-up); the new balance."""
    return await credit(
        conn,
        account_id,
        amount,
        kind=adjustment_kind(amount, correction=correction),
        now=now,
        actor=actor,
        reason=reason,
    )
