"""Read queries behind the dashboard and the admin: the log, counts per day, service, country
and number block, spend, the ledger, the operator's traffic. A customer's are scoped by the
signed-in account's id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ..domain.accounts import Service
from ..storage.tables import account_logs, accounts, authorizations, ledger, services

a = authorizations.c
DAY_S = 86_400
PAGE_SIZE = 50


def day_of(column: Any, sqlite: bool) -> ColumnElement[Any]:
    """The UTC day number of a Unix time, the same on both engines."""
    if sqlite:
        return cast(column / DAY_S, Integer)  # truncates: times are positive
    return cast(func.floor(column / DAY_S), Integer)


async def owned_service(conn: AsyncConnection, account_id: int, service_id: int) -> Service | None:
    q = select(services).where(services.c.id == service_id, services.c.account_id == account_id)
    row = (await conn.execute(q)).first()
    return Service.from_row(row) if row else None


async def account_services(conn: AsyncConnection, account_id: int) -> list[Service]:
    q = select(services).where(services.c.account_id == account_id).order_by(services.c.id)
    return [Service.from_row(r) for r in (await conn.execute(q)).all()]


@dataclass(frozen=True, slots=True)
class LogFilter:
    service_id: int | None = None
    since: float | None = None
    until: float | None = None  # exclusive
    phone: str = ""  # digits, '*' matches any run of digits; otherwise a substring
    client: str = ""
    unique: str = ""
    status: str = ""  # pending | reached | not_reached | test
    channel: str = ""  # flash | voice | mix | inbound

    def conditions(self, account_id: int) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = [a.account_id == account_id]
        if self.service_id is not None:
            cond.append(a.service_id == self.service_id)
        if self.since is not None:
            cond.append(a.created_at >= self.since)
        if self.until is not None:
            cond.append(a.created_at < self.until)
        if self.phone:
            pattern = self.phone.replace("*", "%") if "*" in self.phone else f"%{self.phone}%"
            cond.append(a.phone.like(pattern))
        if self.client:
            cond.append(a.client.contains(self.client, autoescape=True))
        if self.unique:
            cond.append(a.unique_key == self.unique)
        status = {
            "pending": and_(a.call_status == -1, a.is_test.is_(False)),
            "reached": and_(a.call_status == 1, a.is_test.is_(False)),
            "not_reached": and_(a.call_status == 0, a.is_test.is_(False)),
            "test": a.is_test.is_(True),
        }.get(self.status)
        if status is not None:
            cond.append(status)
        if self.channel:
            cond.append(a.kind == self.channel)
        return cond


async def search_log(
    conn: AsyncConnection, account_id: int, flt: LogFilter, page: int
) -> tuple[list[Any], int]:
    where = and_(*flt.conditions(account_id))
    total = int((await conn.execute(select(func.count()).where(where))).scalar_one())
    q = (
        select(authorizations, services.c.name.label("service_name"))
        .join(services, services.c.id == a.service_id)
        .where(where)
        .order_by(a.id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    )
    return list((await conn.execute(q)).all()), total


async def log_rows(conn: AsyncConnection, account_id: int, flt: LogFilter, limit: int) -> list[Any]:
    """Every matching row, newest first, at most ``limit`` (the CSV export)."""
    q = (
        select(authorizations, services.c.name.label("service_name"))
        .join(services, services.c.id == a.service_id)
        .where(and_(*flt.conditions(account_id)))
        .order_by(a.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(q)).all())


async def owned_authorization(conn: AsyncConnection, account_id: int, auth_id: int) -> Any:
    q = (
        select(authorizations, services.c.name.label("service_name"))
        .join(services, services.c.id == a.service_id)
        .where(a.id == auth_id, a.account_id == account_id)
    )
    return (await conn.execute(q)).first()


async def chain(conn: AsyncConnection, root_id: int) -> list[Any]:
    q = select(authorizations).where(or_(a.id == root_id, a.first_id == root_id)).order_by(a.id)
    return list((await conn.execute(q)).all())


@dataclass(frozen=True, slots=True)
class Counts:
    label: str  # a day (YYYY-MM-DD) or a service name
    key: int
    started: int
    reached: int
    not_reached: int
    pending: int
    tests: int

    @property
    def conversion(self) -> float | None:
        """Reached out of the finished real calls (tests and calls in progress left out)."""
        finished = self.reached + self.not_reached
        return self.reached / finished if finished else None


def _count_columns() -> list[Any]:
    real = a.is_test.is_(False)
    return [
        func.count().label("started"),
        func.sum(case((and_(real, a.call_status == 1), 1), else_=0)).label("reached"),
        func.sum(case((and_(real, a.call_status == 0), 1), else_=0)).label("not_reached"),
        func.sum(case((and_(real, a.call_status == -1), 1), else_=0)).label("pending"),
        func.sum(case((a.is_test.is_(True), 1), else_=0)).label("tests"),
    ]


async def counts_by_day(
    conn: AsyncConnection,
    sqlite: bool,
    since: float,
    until: float,
    *,
    account_id: int | None,
    service_id: int | None = None,
) -> dict[int, Counts]:
    d = day_of(a.created_at, sqlite).label("d")
    cond = [a.created_at >= since, a.created_at < until]
    if account_id is not None:
        cond.append(a.account_id == account_id)
    if service_id is not None:
        cond.append(a.service_id == service_id)
    q = select(d, *_count_columns()).where(*cond).group_by(d)
    out: dict[int, Counts] = {}
    for r in (await conn.execute(q)).all():
        out[int(r.d)] = Counts(
            "",
            int(r.d),
            r.started,
            r.reached or 0,
            r.not_reached or 0,
            r.pending or 0,
            r.tests or 0,
        )
    return out


async def counts_by_service(
    conn: AsyncConnection, since: float, until: float, *, account_id: int | None, limit: int = 100
) -> list[Counts]:
    cond = [a.created_at >= since, a.created_at < until]
    if account_id is not None:
        cond.append(a.account_id == account_id)
    q = (
        select(a.service_id, services.c.name, *_count_columns())
        .join(services, services.c.id == a.service_id)
        .where(*cond)
        .group_by(a.service_id, services.c.name)
        .order_by(func.count().desc())
        .limit(limit)
    )
    return [
        Counts(
            r.name,
            int(r.service_id),
            r.started,
            r.reached or 0,
            r.not_reached or 0,
            r.pending or 0,
            r.tests or 0,
        )
        for r in (await conn.execute(q)).all()
    ]


async def counts_by(
    conn: AsyncConnection,
    group: ColumnElement[Any],
    since: float,
    until: float,
    *,
    account_id: int,
    service_id: int | None = None,
    limit: int = 300,
) -> list[Counts]:
    """Counts per value of ``group`` (a country, a number prefix), the busiest first."""
    g = group.label("g")
    cond = [a.account_id == account_id, a.created_at >= since, a.created_at < until]
    if service_id is not None:
        cond.append(a.service_id == service_id)
    q = select(g, *_count_columns()).where(*cond).group_by(g).order_by(func.count().desc())
    return [
        Counts(
            str(r.g or ""),
            0,
            r.started,
            r.reached or 0,
            r.not_reached or 0,
            r.pending or 0,
            r.tests or 0,
        )
        for r in (await conn.execute(q.limit(limit))).all()
    ]


async def counts_by_country(
    conn: AsyncConnection,
    since: float,
    until: float,
    *,
    account_id: int,
    service_id: int | None = None,
) -> list[Counts]:
    return await counts_by(
        conn, a.country_iso, since, until, account_id=account_id, service_id=service_id
    )


async def counts_by_block(
    conn: AsyncConnection,
    digits: int,
    since: float,
    until: float,
    *,
    account_id: int,
    service_id: int | None = None,
) -> list[Counts]:
    """Counts per block of numbers: the first ``digits`` digits of the phone."""
    prefix = func.substr(a.phone, 1, digits)
    return await counts_by(conn, prefix, since, until, account_id=account_id, service_id=service_id)


def merge_counts(label: str, parts: list[Counts]) -> Counts:
    return Counts(
        label,
        0,
        sum(c.started for c in parts),
        sum(c.reached for c in parts),
        sum(c.not_reached for c in parts),
        sum(c.pending for c in parts),
        sum(c.tests for c in parts),
    )


async def spend_by_day(
    conn: AsyncConnection, sqlite: bool, account_id: int, since: float, until: float
) -> dict[int, int]:
    """Charges minus refunds per day, in money units (positive = spent)."""
    d = day_of(ledger.c.created_at, sqlite).label("d")
    q = (
        select(d, func.sum(ledger.c.amount).label("net"))
        .where(
            ledger.c.account_id == account_id,
            ledger.c.kind.in_(("charge", "refund")),
            ledger.c.created_at >= since,
            ledger.c.created_at < until,
        )
        .group_by(d)
    )
    return {int(r.d): -int(r.net or 0) for r in (await conn.execute(q)).all()}


async def ledger_rows(
    conn: AsyncConnection, account_id: int, *, page: int | None
) -> tuple[list[Any], int]:
    where = ledger.c.account_id == account_id
    total = int((await conn.execute(select(func.count()).where(where))).scalar_one())
    q = select(ledger).where(where).order_by(ledger.c.id.desc())
    if page is not None:
        q = q.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    return list((await conn.execute(q)).all()), total


async def recent_ledger(conn: AsyncConnection, account_id: int, limit: int = 20) -> list[Any]:
    q = select(ledger).where(ledger.c.account_id == account_id).order_by(ledger.c.id.desc())
    return list((await conn.execute(q.limit(limit))).all())


async def account_actions(conn: AsyncConnection, account_id: int, limit: int = 100) -> list[Any]:
    """The account's activity log, newest first."""
    q = (
        select(account_logs)
        .where(account_logs.c.account_id == account_id)
        .order_by(account_logs.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(q)).all())


async def outcomes_by_day(
    conn: AsyncConnection, sqlite: bool, since: float, until: float
) -> list[Any]:
    """Every account's authorizations per day, outcome and test flag: rows of
    ``(d, outcome, is_test, n)``."""
    d = day_of(a.created_at, sqlite).label("d")
    q = (
        select(d, a.outcome, a.is_test, func.count().label("n"))
        .where(a.created_at >= since, a.created_at < until)
        .group_by(d, a.outcome, a.is_test)
    )
    return list((await conn.execute(q)).all())


async def service_owners(conn: AsyncConnection, service_ids: list[int]) -> dict[int, str]:
    """The e-mail of the account that owns each service."""
    q = (
        select(services.c.id, accounts.c.email)
        .join(accounts, accounts.c.id == services.c.account_id)
        .where(services.c.id.in_(service_ids))
    )
    return {int(r.id): str(r.email) for r in (await conn.execute(q)).all()}


async def account_totals(conn: AsyncConnection) -> tuple[int, int]:
    """How many accounts there are, and their balances added up (money units)."""
    q = select(func.count(), func.sum(accounts.c.balance)).select_from(accounts)
    count, balance = (await conn.execute(q)).one()
    return int(count), int(balance or 0)
