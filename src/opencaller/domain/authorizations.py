"""Authorizations: initCall, initRepeat, getInfo and inbound waiting, with every rule.

The order of checks in ``init_call`` is part of the contract (docs/compatibility.md):
phone → country → voice → provider → idempotency → hourly limit → per-number limits → balance.
A duplicate ``unique`` is answered before any limit, so retries of an accepted request never
fail. Each write is one transaction; the row is committed before any call is attempted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..storage.database import Database
from ..storage.tables import accounts, authorizations, services
from ..telephony.base import CallKind, CallRequest
from . import billing, limits
from .accounts import Account, Service
from .clock import Clock
from .countries import country_of
from .phones import new_code

a = authorizations.c

MAX_FREE_REPEATS = 2
REPEAT_WINDOW_S = 300.0
INBOUND_TTL_S = 600.0
PRICE_CACHE_S = 5.0
TOUCH_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Policy:
    """Installation-wide knobs (from Settings)."""

    test_numbers: frozenset[str] = frozenset({"79000000001", "79000000002"})
    test_ranges: tuple[str, ...] = ()
    voice_countries: frozenset[str] = frozenset({"RU", "KZ"})
    require_verified_phone: bool = False

    def is_test(self, phone: str) -> bool:
        return phone in self.test_numbers or any(phone.startswith(p) for p in self.test_ranges)


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

    @classmethod
    def from_row(cls, row: Any) -> Authorization:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in fields(cls)})

    @property
    def root_id(self) -> int:
        return self.first_id or self.id


@dataclass(frozen=True, slots=True)
class InitResult:
    auth: Authorization
    exists: bool
    unique: str | None  # the idempotency key to echo (a repeat echoes its original's)


@dataclass(frozen=True, slots=True)
class Info:
    auth: Authorization
    chain: list[int]  # ids of the repeats of the chain's original, oldest first
    root_id: int  # the chain's original (the authorization itself unless it is a repeat)
    root_created_at: float
    root_direction: str
    root_unique: str | None  # the idempotency key stays with the original
    now: float

    @property
    def repeats_left(self) -> int:
        if self.root_direction != "out" or self.now - self.root_created_at > REPEAT_WINDOW_S:
            return 0
        return max(0, MAX_FREE_REPEATS - len(self.chain))


CheckCall = Callable[[CallRequest], "str | None"]

# Built once (building a statement per request costs more than running it). getInfo's
# `balance` is the balance before this authorization was charged, read in the same statement.
_INSERT = (
    insert(authorizations)
    .values(
        balance_before=select(accounts.c.balance)
        .where(accounts.c.id == bindparam("balance_of"))
        .scalar_subquery()
    )
    .returning(*authorizations.c)
)
_BY_ID = select(authorizations).where(a.id == bindparam("id"))
_OWNED = _BY_ID.where(a.service_id == bindparam("service_id"))
_BY_UNIQUE = select(authorizations).where(
    a.service_id == bindparam("service_id"), a.unique_key == bindparam("unique")
)
_CHAIN = select(a.id).where(a.first_id == bindparam("root")).order_by(a.id)


class Authorizations:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        policy: Policy,
        *,
        check_call: CheckCall | None = None,
        notify: Callable[[], None] | None = None,
        confirmation_number: Callable[[str], str | None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.check_call = check_call
        self.notify = notify or (lambda: None)
        self.confirmation_number = confirmation_number
        self._prices: dict[tuple[int | None, str, str], tuple[float, int]] = {}
        self._touched: dict[int, float] = {}  # service id -> when this process last wrote it

    # -- initCall -------------------------------------------------------------------------

    def _destination(self, service: Service, phone: str) -> tuple[bool, str]:
        """Whether ``phone`` is a test number, and its country; errors 3 and 9."""
        is_test = self.policy.is_test(phone)
        country = country_of(phone)
        if country is None:
            if not is_test:
                raise UcallerError(Code.BAD_PHONE)
            country = "RU"
        allowed = service.settings.allowed_countries
        if allowed and not is_test and country not in allowed:
            raise UcallerError(Code.COUNTRY_FORBIDDEN)
        return is_test, country

    async def init_call(
        self,
        service: Service,
        account: Account,
        *,
        phone: str,
        code: str | None,
        client: str | None,
        unique: str | None,
        kind: CallKind,
    ) -> InitResult:
        now = self.clock.now()
        is_test, country = self._destination(service, phone)
        voice_ok = service.settings.voice_enabled and country in self.policy.voice_countries
        if kind is CallKind.VOICE and not voice_ok:
            raise UcallerError(Code.VOICE_UNAVAILABLE)
        if kind is CallKind.MIX and not voice_ok:
            kind = CallKind.FLASH  # mix without a voice fallback is a flash call
        if self.policy.require_verified_phone and not account.phone_verified:
            raise UcallerError(Code.PHONE_NOT_VERIFIED)
        code = code or new_code()
        simulated = is_test or service.test_mode
        if self.check_call is not None and not simulated:
            reason = self.check_call(CallRequest(0, phone, code, kind))
            if reason:
                raise UcallerError(
                    Code.INIT_FAILED, f"Error while initializing the authorization: {reason}"
                )

        if unique is not None:
            async with self.db.read() as conn:
                found = await self._by_unique(conn, service.id, unique)
            if found is not None:
                return self._replay(found, phone, unique)

        async with self.db.write() as conn:
            if unique is not None:
                await self.db.lock(conn, "unique", f"{service.id}:{unique}")
                found = await self._by_unique(conn, service.id, unique)
                if found is not None:
                    return self._replay(found, phone, unique)
            hourly = service.settings.hourly_limit
            if hourly:
                await self.db.lock(conn, "service", service.id)
                await limits.check_service_hourly(conn, service.id, hourly, now)
            if not is_test:
                await self.db.lock(conn, "phone", phone)
                await limits.check_number(conn, phone, now)
            price = 0
            if not simulated:
                price = await self._price(conn, account.tariff_id, kind.value, country)
            # The row first, the money last: the account's balance row is locked from the
            # charge to the commit, so that stretch is kept to one statement.
            row = await self._insert(
                conn,
                service=service,
                phone=phone,
                code=code,
                client=client,
                unique=unique,
                kind=kind.value,
                country=country,
                is_test=simulated,
                cost=price,
                now=now,
            )
            if price > 0:
                after = await billing.charge(
                    conn,
                    account.id,
                    price,
                    now=now,
                    channel=kind.value,
                    authorization_id=row.id,
                )
                if after is None:
                    raise UcallerError(Code.LOW_BALANCE)
            await self._touch_service(conn, service.id, now)
        self.notify()
        return InitResult(row, exists=False, unique=unique)

    async def _price(
        self, conn: AsyncConnection, tariff_id: int | None, channel: str, country: str
    ) -> int:
        """Tariff prices change rarely: each node keeps them for PRICE_CACHE_S seconds."""
        key = (tariff_id, channel, country)
        hit = self._prices.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        price = await billing.price_of(conn, tariff_id, channel, country)
        self._prices[key] = (now + PRICE_CACHE_S, price)
        return price

    def _replay(self, found: Authorization, phone: str, unique: str) -> InitResult:
        if found.phone != phone:
            raise UcallerError(
                Code.BAD_PARAMETER,
                "The unique key was already used for another phone number",
            )
        return InitResult(found, exists=True, unique=unique)

    async def _insert(
        self,
        conn: AsyncConnection,
        *,
        service: Service,
        phone: str,
        code: str,
        client: str | None,
        unique: str | None,
        kind: str,
        country: str,
        is_test: bool,
        cost: int,
        now: float,
        first_id: int | None = None,
        repeat_index: int = 0,
        direction: str = "out",
        dispatch_state: str = "queued",
        callback_url: str | None = None,
        confirmation_number: str | None = None,
    ) -> Authorization:
        values = {
            "service_id": service.id,
            "account_id": service.account_id,
            "balance_of": service.account_id,
            "direction": direction,
            "phone": phone,
            "code": code,
            "client": client,
            "unique_key": unique,
            "kind": kind,
            "country_iso": country,
            "is_test": is_test,
            "cost": cost,
            "refunded": False,
            "created_at": now,
            "first_id": first_id,
            "repeat_index": repeat_index,
            "repeat_count": 0,
            "call_status": -1,
            "dispatch_state": dispatch_state,
            "callback_url": callback_url,
            "confirmation_number": confirmation_number,
        }
        result = await conn.execute(_INSERT, values)
        return Authorization.from_row(result.one())

    async def _touch_service(self, conn: AsyncConnection, service_id: int, now: float) -> None:
        # Every request of a service would otherwise queue on this one row's lock; the
        # "last request" time only needs to be right to the second.
        if now - self._touched.get(service_id, -1e18) < TOUCH_EVERY_S:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[service_id] = now
        await conn.execute(
            update(services).where(services.c.id == service_id).values(last_request_at=now)
        )

    async def _by_unique(
        self, conn: AsyncConnection, service_id: int, unique: str
    ) -> Authorization | None:
        params = {"service_id": service_id, "unique": unique}
        row = (await conn.execute(_BY_UNIQUE, params)).first()
        return Authorization.from_row(row) if row else None

    async def _get(self, conn: AsyncConnection, auth_id: int) -> Authorization:
        row = (await conn.execute(_BY_ID, {"id": auth_id})).one()
        return Authorization.from_row(row)

    async def _owned(self, conn: AsyncConnection, service_id: int, auth_id: int) -> Authorization:
        row = (await conn.execute(_OWNED, {"id": auth_id, "service_id": service_id})).first()
        if row is None:
            raise UcallerError(Code.NO_SUCH_ID)
        return Authorization.from_row(row)

    # -- initRepeat -----------------------------------------------------------------------

    async def init_repeat(
        self, service: Service, account: Account, uid: int, *, voice: bool = False
    ) -> InitResult:
        now = self.clock.now()
        async with self.db.write() as conn:
            given = await self._owned(conn, service.id, uid)
            await self.db.lock(conn, "chain", given.root_id)
            root = given if given.first_id is None else await self._get(conn, given.root_id)
            if root.direction != "out":
                raise UcallerError(Code.REPEAT_INVALID, "Inbound verifications cannot be repeated")
            if now - root.created_at > REPEAT_WINDOW_S:
                raise UcallerError(Code.REPEAT_EXPIRED)
            chain = await self._chain(conn, root.id)
            if len(chain) >= MAX_FREE_REPEATS:
                raise UcallerError(Code.REPEAT_LIMIT)
            last_status = await self._status(conn, chain[-1] if chain else root.id)
            if last_status == -1:
                raise UcallerError(
                    Code.REPEAT_INVALID,
                    "Erroneous attempt to start a free repeat: the previous call is still in"
                    " progress",
                )
            if not root.is_test:
                await self.db.lock(conn, "phone", root.phone)
                await limits.check_number(conn, root.phone, now)
            kind = CallKind.VOICE if voice else CallKind(root.kind)
            if kind is CallKind.VOICE and not (
                service.settings.voice_enabled and root.country_iso in self.policy.voice_countries
            ):
                raise UcallerError(Code.VOICE_UNAVAILABLE)
            row = await self._insert(
                conn,
                service=service,
                phone=root.phone,
                code=root.code,
                client=root.client,
                unique=None,  # the key stays with the original; a repeat echoes it
                kind=kind.value,
                country=root.country_iso,
                is_test=root.is_test,
                cost=0,
                now=now,
                first_id=root.id,
                repeat_index=len(chain) + 1,
            )
            await conn.execute(
                update(authorizations)
                .where(a.id == root.id)
                .values(repeat_count=authorizations.c.repeat_count + 1)
            )
            await self._touch_service(conn, service.id, now)
        self.notify()
        return InitResult(row, exists=root.unique_key is not None, unique=root.unique_key)

    async def _chain(self, conn: AsyncConnection, root_id: int) -> list[int]:
        return [int(r) for r in (await conn.execute(_CHAIN, {"root": root_id})).scalars()]

    async def _status(self, conn: AsyncConnection, auth_id: int) -> int:
        q = select(a.call_status).where(a.id == auth_id)
        return int((await conn.execute(q)).scalar_one())

    # -- getInfo --------------------------------------------------------------------------

    async def info(self, service: Service, uid: int) -> Info:
        # Two or three statements on the primary key and the first_id index: one joined
        # statement was measured slower on PostgreSQL (its planning costs more than a trip).
        async with self.db.read() as conn:
            auth = await self._owned(conn, service.id, uid)
            root = auth if auth.first_id is None else await self._get(conn, auth.root_id)
            chain = await self._chain(conn, root.id) if root.repeat_count else []
        return Info(
            auth=auth,
            chain=chain,
            root_id=root.id,
            root_created_at=root.created_at,
            root_direction=root.direction,
            root_unique=root.unique_key,
            now=self.clock.now(),
        )

    # -- inboundCallWaiting ---------------------------------------------------------------

    async def inbound_waiting(
        self, service: Service, account: Account, *, phone: str, callback_url: str
    ) -> Authorization:
        now = self.clock.now()
        is_test, country = self._destination(service, phone)
        number = self.confirmation_number(phone) if self.confirmation_number else None
        if not number:
            raise UcallerError(
                Code.INIT_FAILED,
                "Error while initializing the authorization: inbound verification is not"
                " configured on this installation",
            )
        simulated = is_test or service.test_mode
        async with self.db.write() as conn:
            price = 0
            if not simulated:
                price = await self._price(conn, account.tariff_id, "inbound", country)
            row = await self._insert(
                conn,
                service=service,
                phone=phone,
                code=number[-4:],
                client=None,
                unique=None,
                kind="inbound",
                country=country,
                is_test=simulated,
                cost=price,
                now=now,
                direction="in",
                dispatch_state="waiting",
                callback_url=callback_url,
                confirmation_number=number,
            )
            if price > 0:
                after = await billing.charge(
                    conn, account.id, price, now=now, channel="inbound", authorization_id=row.id
                )
                if after is None:
                    raise UcallerError(Code.LOW_BALANCE)
            await self._touch_service(conn, service.id, now)
            return row

    async def match_inbound(
        self, conn: AsyncConnection, caller: str, called: str, now: float
    ) -> Authorization | None:
        """The newest authorization waiting for ``caller`` to dial ``called``, if any."""
        q = (
            select(authorizations)
            .where(
                a.direction == "in",
                a.dispatch_state == "waiting",
                a.phone == caller,
                a.confirmation_number == called,
                a.created_at > now - INBOUND_TTL_S,
            )
            .order_by(a.id.desc())
            .limit(1)
        )
        row = (await conn.execute(q)).first()
        return Authorization.from_row(row) if row else None
