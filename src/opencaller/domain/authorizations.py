"""Authorizations: initCall, initRepeat, getInfo and inbound waiting, with every rule.

The order of checks in ``init_call`` is part of the contract (docs/compatibility.md):
phone → country → voice → provider → idempotency → hourly limit → per-number limits → balance.
A duplicate ``unique`` is answered before any limit, so retries of an accepted request never
fail. Each write commits before any call is attempted.

How a new row and its limits reach the database — counted in its transaction, or reserved in
Redis first — is writes.py; the row with its charge and ledger row, new_authorizations.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Code, UcallerError
from ..storage.database import Database
from ..storage.tables import authorizations, services
from ..telephony.base import CallKind, CallRequest
from . import billing
from .accounts import Account, Service
from .clock import Clock
from .countries import country_of
from .fraud.guard import Guard, NoGuard
from .limits import LimitStore
from .phones import new_code
from .records import (
    BY_ID,
    CHAIN,
    OWNED,
    REPEATED,
    Authorization,
)
from .request_keys import Key, Taken, answer_of, claim, keep
from .writes import Writes

__all__ = ["Authorization", "Authorizations", "Info", "InitResult", "Policy"]

a = authorizations.c

MAX_FREE_REPEATS = 2
REPEAT_WINDOW_S = 300.0
INBOUND_TTL_S = 600.0
PRICE_CACHE_S = 5.0
TOUCH_EVERY_S = 1.0
# Per-node caches, least recently used forgotten first: prices by (tariff, channel, country),
# and the services whose last request time this node wrote lately.
MAX_CACHED_PRICES = 10_000
MAX_TOUCHED_SERVICES = 10_000


@dataclass(frozen=True, slots=True)
class Policy:
    """Installation-wide knobs (from Settings)."""

    test_numbers: frozenset[str] = frozenset({"79000000001", "79000000002"})
    test_ranges: tuple[str, ...] = ()
    voice_countries: frozenset[str] = frozenset({"RU", "KZ"})
    require_verified_phone: bool = False

    def is_test(self, phone: str) -> bool:
        # A range is a prefix: without the E.164 length cap, any longer digit string in it
        # would pass as a number (and overflow the stored phone column).
        if len(phone) > 15:
            return False
        return phone in self.test_numbers or any(phone.startswith(p) for p in self.test_ranges)


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
    verified_at: float | None = None  # verifyCode's state is the chain's, on the original

    @property
    def repeats_left(self) -> int:
        if self.root_direction != "out" or self.now - self.root_created_at > REPEAT_WINDOW_S:
            return 0
        return max(0, MAX_FREE_REPEATS - len(self.chain))


CheckCall = Callable[[CallRequest], "str | None"]


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
        limit_store: LimitStore | None = None,
        guard: Guard | NoGuard | None = None,
    ) -> None:
        self.db = db
        self.guard = guard or NoGuard()  # domain/fraud: refuses or routes before any charge
        self.clock = clock
        self.policy = policy
        self.check_call = check_call
        self.notify = notify or (lambda: None)
        self.confirmation_number = confirmation_number
        self.writes = Writes(db, limit_store)
        self._prices: LRUCache[tuple[int | None, str, str], tuple[float, int]] = LRUCache(
            maxsize=MAX_CACHED_PRICES
        )
        # service id -> when this process last wrote it
        self._touched: LRUCache[int, float] = LRUCache(maxsize=MAX_TOUCHED_SERVICES)

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

    def _channel(
        self, service: Service, account: Account, country: str, kind: CallKind
    ) -> CallKind:
        """The channel the call goes out on (error 11 for voice where it is off), then the
        account's own state (a phone to verify first)."""
        voice_ok = service.settings.voice_enabled and country in self.policy.voice_countries
        if kind is CallKind.VOICE and not voice_ok:
            raise UcallerError(Code.VOICE_UNAVAILABLE)
        if kind is CallKind.MIX and not voice_ok:
            kind = CallKind.FLASH  # mix without a voice fallback is a flash call
        if self.policy.require_verified_phone and not account.phone_verified:
            raise UcallerError(Code.PHONE_NOT_VERIFIED)
        return kind

    def _provider_check(self, phone: str, code: str, kind: CallKind) -> None:
        """The provider refuses a call it cannot place (no trunk for the number...)."""
        if self.check_call is None:
            return
        reason = self.check_call(CallRequest(0, phone, code, kind))
        if reason:
            raise UcallerError(
                Code.INIT_FAILED, f"Error while initializing the authorization: {reason}"
            )

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
        kind = self._channel(service, account, country, kind)
        code = code or new_code()
        simulated = is_test or service.test_mode
        if not simulated:
            self._provider_check(phone, code, kind)
        if unique is not None:
            found = await self.writes.find_unique(service.id, unique)
            if found is not None:
                return self._replay(found, phone, unique)
        # Checks that refuse a new authorization but not a retry go here, before pricing:
        # the fraud guard (domain/fraud) may refuse (error 64) or route the channel.
        kind = await self.guard.admit(
            service, account, phone=phone, country=country, kind=kind, client=client,
            simulated=simulated,
        )
        price = 0 if simulated else await self._price(account.tariff_id, kind.value, country)
        values = self._values(
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
        # The limits (hourly, then per number), the balance, and the write.
        row, new = await self.writes.authorize(service, values, is_test=is_test, now=now)
        if not new and unique is not None:
            return self._replay(row, phone, unique)  # a racing request with the key won
        await self.guard.placed()  # the fraud guard counts the call it admitted
        await self._touch_service(service.id, now)
        self.notify()
        return InitResult(row, exists=False, unique=unique)

    async def _price(self, tariff_id: int | None, channel: str, country: str) -> int:
        """Tariff prices change rarely: each node keeps them for PRICE_CACHE_S seconds."""
        key = (tariff_id, channel, country)
        hit = self._prices.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.db.read() as conn:
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

    @staticmethod
    def _values(
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
    ) -> dict[str, Any]:
        return {
            "service_id": service.id,
            "account_id": service.account_id,
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

    async def _touch_service(self, service_id: int, now: float) -> None:
        # Every request of a service would otherwise queue on this one row's lock; the
        # "last request" time only needs to be right to the second.
        if now - self._touched.get(service_id, -1e18) < TOUCH_EVERY_S:
            return
        self._touched[service_id] = now
        async with self.db.write() as conn:
            await conn.execute(
                update(services).where(services.c.id == service_id).values(last_request_at=now)
            )

    async def _get(self, conn: AsyncConnection, auth_id: int) -> Authorization:
        row = (await conn.execute(BY_ID.clause, {"id": auth_id})).one()
        return Authorization.from_row(row)

    async def _owned(self, conn: AsyncConnection, service_id: int, auth_id: int) -> Authorization:
        params = {"id": auth_id, "service_id": service_id}
        row = (await conn.execute(OWNED.clause, params)).first()
        if row is None:
            raise UcallerError(Code.NO_SUCH_ID)
        return Authorization.from_row(row)

    # -- initRepeat -----------------------------------------------------------------------

    async def init_repeat(
        self,
        service: Service,
        account: Account,
        uid: int,
        *,
        voice: bool = False,
        unique: str | None = None,
    ) -> InitResult:
        """A free repeat; with ``unique`` (request_keys.py) a retry gets the same repeat."""
        if unique is None:
            return await self._repeat(service, uid, voice=voice, key=None)
        key = Key(service.id, "initRepeat", unique, f"uid={uid}&voice={int(voice)}")
        kept = await answer_of(self.db, key)
        if kept is None:
            try:
                return await self._repeat(service, uid, voice=voice, key=key)
            except (UcallerError, Taken):
                # A request with the same key may have placed the repeat meanwhile.
                kept = await answer_of(self.db, key)
                if kept is None:
                    raise
        async with self.db.read() as conn:
            row = await self._get(conn, int(kept["ucaller_id"]))
            root = row if row.first_id is None else await self._get(conn, row.root_id)
        return InitResult(row, exists=root.unique_key is not None, unique=root.unique_key)

    async def _repeat(
        self, service: Service, uid: int, *, voice: bool, key: Key | None
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
            kind = CallKind.VOICE if voice else CallKind(root.kind)
            voice_ok = (
                service.settings.voice_enabled and root.country_iso in self.policy.voice_countries
            )
            if kind is CallKind.VOICE and not voice_ok:
                raise UcallerError(Code.VOICE_UNAVAILABLE)
            if key is not None:
                await claim(self.db, conn, key, root.id, now)
            values = self._values(
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
            # Its limits last, so that nothing is recorded for a repeat refused for another
            # reason.
            phone = None if root.is_test else root.phone
            row = await self.writes.repeat(conn, service, values, phone, now)
            await conn.execute(REPEATED, {"root": root.id})
            if key is not None:
                await keep(conn, key, {"ucaller_id": row.id})
        await self._touch_service(service.id, now)
        self.notify()
        return InitResult(row, exists=root.unique_key is not None, unique=root.unique_key)

    async def _chain(self, conn: AsyncConnection, root_id: int) -> list[int]:
        return [int(r) for r in (await conn.execute(CHAIN.clause, {"root": root_id})).scalars()]

    async def _status(self, conn: AsyncConnection, auth_id: int) -> int:
        q = select(a.call_status).where(a.id == auth_id)
        return int((await conn.execute(q)).scalar_one())

    # -- getInfo --------------------------------------------------------------------------

    async def info(self, service: Service, uid: int) -> Info:
        # Two or three statements on the primary key and the first_id index: one joined
        # statement was measured slower on PostgreSQL (its planning costs more than a trip).
        found = await self.db.fetch_one(OWNED, {"id": uid, "service_id": service.id})
        if found is None:
            raise UcallerError(Code.NO_SUCH_ID)
        auth = root = Authorization.from_row(found)
        if auth.first_id is not None:
            root_row = await self.db.fetch_one(BY_ID, {"id": auth.first_id})
            assert root_row is not None  # repeats are deleted with their original
            root = Authorization.from_row(root_row)
        chain: list[int] = []
        if root.repeat_count:
            chain = [int(r["id"]) for r in await self.db.fetch_all(CHAIN, {"root": root.id})]
        return Info(
            auth=auth,
            chain=chain,
            root_id=root.id,
            root_created_at=root.created_at,
            root_direction=root.direction,
            root_unique=root.unique_key,
            now=self.clock.now(),
            verified_at=root.verified_at,
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
        price = 0
        if not simulated:
            price = await self._price(account.tariff_id, "inbound", country)
        values = self._values(
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
        row = await self.writes.inbound(service, values, now)
        await self._touch_service(service.id, now)
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
