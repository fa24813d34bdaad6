"""Idempotency keys (`unique`) of methods other than initCall: verifyCode and initRepeat.

The same key with the same arguments gets the first answer again; with other arguments it is
error 2. A key is taken (``claim``) inside the transaction that does the work and its answer is
kept (``keep``) in that same transaction, so of simultaneous requests with one key only one
does the work. Answers refused before the work (errors that depend only on the state) are not
kept: asking again gives them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..storage.database import Database
from ..storage.tables import request_keys

k = request_keys.c


@dataclass(frozen=True, slots=True)
class Key:
    service_id: int
    method: str
    unique: str
    arguments: str  # what "the same request" means: the arguments, normalised


class Taken(Exception):
    """Another request holds the key: its answer is the one to give."""


def _where(key: Key) -> Any:
    return (
        (k.service_id == key.service_id) & (k.method == key.method) & (k.unique_key == key.unique)
    )


async def answer_of(db: Database, key: Key) -> dict[str, Any] | None:
    """The kept answer for ``key``, or None if it is new; error 2 for other arguments."""
    async with db.read() as conn:
        row = (await conn.execute(select(k.arguments, k.answer).where(_where(key)))).first()
    if row is None or row.answer is None:
        return None
    if row.arguments != key.arguments:
        raise UcallerError(
            Code.BAD_PARAMETER, "The unique key was already used with other arguments"
        )
    answer: dict[str, Any] = row.answer
    return answer


async def claim(
    db: Database, conn: AsyncConnection, key: Key, authorization_id: int, now: float
) -> None:
    """Take ``key`` in the caller's transaction; ``Taken`` if another request has it."""
    insert = sqlite_insert if db.sqlite else pg_insert
    statement = (
        insert(request_keys)
        .values(
            service_id=key.service_id,
            method=key.method,
            unique_key=key.unique,
            authorization_id=authorization_id,
            arguments=key.arguments,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(k.id)
    )
    # PostgreSQL waits here for a concurrent holder of the key to commit.
    if (await conn.execute(statement)).first() is None:
        raise Taken


async def keep(conn: AsyncConnection, key: Key, answer: dict[str, Any]) -> None:
    await conn.execute(update(request_keys).where(_where(key)).values(answer=answer))
