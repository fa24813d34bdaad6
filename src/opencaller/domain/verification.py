"""verifyCode (our extension, spec §14): the server checks the code the subscriber typed.

The state lives on the chain's original authorization, so an original and its free repeats
share one code, one attempt counter and one verification. Every check is counted before the
code is compared, by one conditional UPDATE: however many nodes and processes race, the
database lets through at most ``verify_attempts`` checks.

Order of answers: already verified (the right code again is the same success; another code is
63) → no attempts left (61) → expired (62) → count the attempt → right (success) or wrong (60).

With a ``unique`` key the first answer is kept (request_keys) and replayed for the same key and
arguments, without spending another attempt; the key is claimed in the transaction that counts,
so of simultaneous requests with one key only one is checked.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Float, Integer, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..observability import metrics
from ..storage.database import Database
from ..storage.tables import authorizations
from . import status_events
from .accounts import Service
from .records import BY_ID, OWNED, Authorization
from .request_keys import Key, Taken, answer_of, claim, keep

a = authorizations.c
METHOD = "verifyCode"


@dataclass(frozen=True, slots=True)
class Verified:
    ucaller_id: int  # the id that was asked about (any id of the chain)
    verified_at: float
    attempts_left: int
    fresh: bool = False  # this check verified the chain (not kept with a replayed answer)


# One check, counted only while attempts remain and the chain is not verified yet.
_COUNT = (
    update(authorizations)
    .where(
        a.id == bindparam("root", type_=BigInteger),
        a.verify_attempts < bindparam("max", type_=Integer),
        a.verified_at.is_(None),
    )
    .values(verify_attempts=a.verify_attempts + 1)
    .returning(a.verify_attempts)
)

# The first right code wins; a concurrent right code finds it set and reads it.
_VERIFY = (
    update(authorizations)
    .where(a.id == bindparam("root", type_=BigInteger), a.verified_at.is_(None))
    .values(verified_at=bindparam("now", type_=Float))
)

_STATE = select(a.verify_attempts, a.verified_at).where(a.id == bindparam("root", type_=BigInteger))


def _matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


async def _root(db: Database, service: Service, uid: int) -> Authorization:
    found = await db.fetch_one(OWNED, {"id": uid, "service_id": service.id})
    if found is None:
        raise UcallerError(Code.NO_SUCH_ID)
    auth = Authorization.from_row(found)
    if auth.first_id is None:
        return auth
    root = await db.fetch_one(BY_ID, {"id": auth.first_id})
    assert root is not None  # repeats are deleted with their original
    return Authorization.from_row(root)


def _left(limit: int, used: int) -> int:
    return max(0, limit - used)


def _answer_verified(
    uid: int, root: Authorization, code: str, verified_at: float, used: int, limit: int
) -> Verified:
    if not _matches(root.code, code):
        raise UcallerError(Code.ALREADY_VERIFIED)
    return Verified(uid, verified_at, _left(limit, used))


async def _state(conn: AsyncConnection, root_id: int) -> tuple[int, float | None]:
    row = (await conn.execute(_STATE, {"root": root_id})).one()
    return int(row.verify_attempts), row.verified_at


Outcome = Verified | UcallerError


def _stored(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Verified):
        return {
            "ucaller_id": outcome.ucaller_id,
            "verified_at": outcome.verified_at,
            "attempts_left": outcome.attempts_left,
        }
    return {"code": int(outcome.code), "error": outcome.error, "extra": outcome.extra}


def _replayed(answer: dict[str, Any]) -> Verified:
    if "code" in answer:
        raise UcallerError(Code(answer["code"]), answer["error"], extra=answer["extra"])
    return Verified(answer["ucaller_id"], answer["verified_at"], answer["attempts_left"])


async def verify_code(
    db: Database,
    service: Service,
    uid: int,
    code: str,
    *,
    now: float,
    unique: str | None = None,
) -> Verified:
    """Check ``code`` for authorization ``uid`` of ``service``; raises the error answers."""
    key = None
    if unique is not None:
        key = Key(service.id, METHOD, unique, f"uid={uid}&code={code}")
        kept = await answer_of(db, key)
        if kept is not None:
            return _replayed(kept)
    try:
        return await _check(db, service, uid, code, now=now, key=key)
    except (UcallerError, Taken):
        # A request with the same key may have answered meanwhile: that answer stands. (After
        # Taken it is always there: the holder kept it in the transaction that took the key.)
        if key is not None:
            kept = await answer_of(db, key)
            if kept is not None:
                return _replayed(kept)
        raise


async def _check(
    db: Database, service: Service, uid: int, code: str, *, now: float, key: Key | None
) -> Verified:
    limit = service.settings.verify_attempts
    root = await _root(db, service, uid)
    if root.verified_at is not None:
        return _answer_verified(uid, root, code, root.verified_at, root.verify_attempts, limit)
    if root.direction != "out":
        raise UcallerError(
            Code.BAD_PARAMETER,
            "Inbound verifications are confirmed by the subscriber's call, not by a code",
        )
    if root.verify_attempts >= limit:
        raise UcallerError(Code.NO_ATTEMPTS_LEFT, extra={"attempts_left": 0})
    if now - root.created_at > service.settings.verify_ttl_s:
        raise UcallerError(Code.CODE_EXPIRED)

    right = _matches(root.code, code)
    async with db.write() as conn:
        if key is not None:
            await claim(db, conn, key, root.id, now)
        outcome = await _count(conn, service, uid, root, code, right, now)
        if key is not None:
            await keep(conn, key, _stored(outcome))
    if isinstance(outcome, UcallerError):
        raise outcome
    if outcome.fresh:
        metrics.count_verified(root)
    return outcome


async def _count(
    conn: AsyncConnection,
    service: Service,
    uid: int,
    root: Authorization,
    code: str,
    right: bool,
    now: float,
) -> Outcome:
    """Spend one attempt and decide, inside the write transaction (nothing raised here, so
    the answer is kept with the count)."""
    limit = service.settings.verify_attempts
    counted = (await conn.execute(_COUNT, {"root": root.id, "max": limit})).first()
    if counted is None:
        # Another check got in first: it used the last attempt or verified the chain.
        used, verified_at = await _state(conn, root.id)
        if verified_at is None:
            return UcallerError(Code.NO_ATTEMPTS_LEFT, extra={"attempts_left": 0})
        try:
            return _answer_verified(uid, root, code, verified_at, used, limit)
        except UcallerError as err:
            return err
    used = int(counted.verify_attempts)
    if not right:
        return UcallerError(Code.WRONG_CODE, extra={"attempts_left": _left(limit, used)})
    await conn.execute(_VERIFY, {"root": root.id, "now": now})
    await status_events.enqueue_verified(conn, service, authorization_id=uid, now=now)
    return Verified(uid, now, _left(limit, used), fresh=True)
