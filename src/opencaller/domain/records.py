"""Authorization rows: the record type and the statements of the request path that read them.
New rows are written by domain/new_authorizations.py only.

Every statement here is built once (building one per request costs more than running it) and
most are ``Hot`` (storage/hot.py): on PostgreSQL they run on asyncpg directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, select
from sqlalchemy import update as update_

from ..storage.hot import Hot
from ..storage.tables import authorizations

a = authorizations.c


@dataclass(frozen=True, slots=True)
class Authorization:
    id: int
    service_id: int
    account_id: int
    direction: str
    phone: str
    code: str
    client: str | None
    unique_key: str | None
    kind: str
    country_iso: str
    is_test: bool
    cost: int
    balance_before: int
    created_at: float
    first_id: int | None
    repeat_index: int
    repeat_count: int
    call_status: int
    outcome: str | None
    caller_id: str | None
    sip_code: int | None
    sip_reason: str | None
    confirmation_number: str | None
    callback_url: str | None
    verify_attempts: int
    verified_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Authorization:
        """From a SQLAlchemy row or any mapping keyed by column name (an asyncpg record)."""
        m: Mapping[str, Any] = getattr(row, "_mapping", row)
        return cls(**{f.name: m[f.name] for f in _FIELDS})

    @property
    def root_id(self) -> int:
        return self.first_id or self.id


_FIELDS = fields(Authorization)

BY_ID = Hot(select(authorizations).where(a.id == bindparam("id", type_=BigInteger)))
OWNED = Hot(BY_ID.clause.where(a.service_id == bindparam("service_id", type_=BigInteger)))  # type: ignore[attr-defined]
BY_UNIQUE = Hot(
    select(authorizations).where(
        a.service_id == bindparam("service_id", type_=BigInteger),
        a.unique_key == bindparam("unique", type_=String),
    )
)
CHAIN = Hot(select(a.id).where(a.first_id == bindparam("root", type_=BigInteger)).order_by(a.id))

# Columns a new authorization is written with; the rest keep their defaults (NULL).
NEW_COLUMNS = (
    "service_id",
    "account_id",
    "direction",
    "phone",
    "code",
    "client",
    "unique_key",
    "kind",
    "country_iso",
    "is_test",
    "cost",
    "refunded",
    "created_at",
    "first_id",
    "repeat_index",
    "repeat_count",
    "call_status",
    "dispatch_state",
    "callback_url",
    "confirmation_number",
)


REPEATED = (
    update_(authorizations)
    .where(a.id == bindparam("root", type_=BigInteger))
    .values(repeat_count=a.repeat_count + 1)
)
