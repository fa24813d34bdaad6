"""The fraud guard: one decision before every call is placed (docs/antifraud.md).

In order: geo-permissions (error 9), high-risk ranges (64, lasting), then the counted
signals (64 with Retry-After, until the counts leave the window). A refusal is written to
the journal with its reason and is never charged. An admitted call has its channel chosen by
conversion when the service asks for it (routing.py), and is counted once its authorization
is written (``placed``): a call the limits or the balance refuse later is not counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from ...errors import Code, UcallerError
from ...storage.database import Database
from ...storage.tables import authorizations
from ...telephony.base import CallKind
from ..accounts import Account, Service
from ..clock import Clock
from . import decisions, geo
from .counters import CounterStore, Counts
from .journal import Journal, Refusal
from .origin import ORIGIN
from .ranges import HighRiskRanges
from .routing import Router
from .signals import Attempt, channel_key, keys_of

OperatorOf = Callable[[str], Awaitable[str]]
a = authorizations.c


@dataclass(frozen=True, slots=True)
class _Pending:
    keys: list[str]
    bucket: int
    now: float
    remember: tuple[int, str]


# The admitted call of the request being served, counted once its row is written (placed):
# per request (each runs in its own task), so concurrent requests never see each other's.
PENDING: ContextVar[_Pending | None] = ContextVar("opencaller_fraud_pending", default=None)


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    enabled: bool = True
    geo: bool = True
    home_countries: frozenset[str] = frozenset({"RU"})
    voice_countries: frozenset[str] = frozenset({"RU", "KZ"})
    window_s: float = 3600.0
    route_mix: bool = False
    thresholds: decisions.Thresholds = field(default_factory=decisions.Thresholds)


class Guard:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        policy: GuardPolicy,
        *,
        store: CounterStore,
        ranges: HighRiskRanges,
        router: Router,
        operator_of: OperatorOf,
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.store = store
        self.ranges = ranges
        self.router = router
        self.operator_of = operator_of
        self.journal = Journal(db)

    async def admit(
        self,
        service: Service,
        account: Account,
        *,
        phone: str,
        country: str,
        kind: CallKind,
        client: str | None,
        simulated: bool,
    ) -> CallKind:
        """The channel to call with; raises error 64 (or 9) when the call must not be placed.
        Simulated calls (test numbers, test mode) cost nothing and are not guarded."""
        PENDING.set(None)  # nothing left over from an earlier request that was refused later
        if simulated or not self.policy.enabled:
            return kind
        operator = await self.operator_of(phone)
        attempt = Attempt(service.id, account.id, phone, country, operator, ORIGIN.get(), client)
        now = self.clock.now()
        bucket = int(now // self.policy.window_s)
        keys = keys_of(attempt, installation=True)
        channels = self._channels(service, kind, attempt)
        counts = await self.store.read([*keys, *channels.values()], [bucket - 1, bucket])
        refusal = self._lasting(service, attempt) or await self._counted(
            service.id, keys, counts, bucket, now
        )
        if refusal is not None:
            await self._refused(attempt, refusal, keys, counts, bucket, now)
            raise _error(refusal)
        chosen = self._route(kind, channels, counts)
        counted = self._counted_keys(keys, counts)
        counted.append(channel_key(service.id, operator, chosen.value))
        PENDING.set(_Pending(counted, bucket, now, (service.id, phone)))
        return chosen

    async def placed(self) -> None:
        """The call admitted last in this request was accepted (its row is written): count
        it. A call refused afterwards (limits, balance) costs nothing and is not counted."""
        pending = PENDING.get()
        if pending is None:
            return
        PENDING.set(None)
        await self.store.count(pending.keys, pending.bucket, pending.now, pending.remember)

    async def _refused(
        self,
        attempt: Attempt,
        refusal: Refusal,
        keys: dict[str, str],
        counts: Counts,
        bucket: int,
        now: float,
    ) -> None:
        await self.journal.record(attempt, refusal, now)
        if refusal.until is not None:
            # A refused attempt still counts (without a code): the prefix around a run that
            # keeps being refused turns suspect itself, before the next run starts.
            await self.store.count(self._counted_keys(keys, counts), bucket, now, None)

    def _lasting(self, service: Service, attempt: Attempt) -> Refusal | None:
        """Refusals that do not end by themselves: geography and high-risk ranges."""
        if self.policy.geo:
            why = geo.refused(service.settings, attempt.country, self.policy.home_countries)
            if why:
                return Refusal(int(Code.COUNTRY_FORBIDDEN), "geo", attempt.country, why)
        prefix = self.ranges.match(attempt.phone)
        if prefix is not None:
            what = self.ranges.describe(prefix) or "listed range"
            why = f"high-risk range +{prefix} ({what})"
            return Refusal(int(Code.SUSPECTED_FRAUD), "high_risk", prefix, why)
        return None

    async def _counted(
        self, service_id: int, keys: dict[str, str], counts: Counts, bucket: int, now: float
    ) -> Refusal | None:
        judged = keys
        if not decisions.reports_codes(keys, counts):
            judged = {k: s for k, s in keys.items() if not k.startswith("all:")}
        for suspect in decisions.suspects(judged, counts, self.policy.thresholds):
            if await self.journal.lifted(suspect.key, now, service_id):
                continue
            wait = decisions.retry_after(bucket, self.policy.window_s, now)
            return Refusal(
                int(Code.SUSPECTED_FRAUD),
                suspect.signal,
                suspect.key,
                decisions.reason(suspect),
                retry_after=wait,
                until=(bucket + 2) * self.policy.window_s,
            )
        return None

    @staticmethod
    def _counted_keys(keys: dict[str, str], counts: Counts) -> list[str]:
        """Installation-wide keys count only calls of services that report codes."""
        if decisions.reports_codes(keys, counts):
            return list(keys)
        return [k for k in keys if not k.startswith("all:")]

    def _channels(self, service: Service, kind: CallKind, attempt: Attempt) -> dict[str, str]:
        """The channels routing chooses between (channel -> key); empty: no routing."""
        auto = service.settings.channel == "auto" and kind in (CallKind.FLASH, CallKind.MIX)
        mix = self.policy.route_mix and kind is CallKind.MIX
        if not (auto or mix):
            return {}
        voice_ok = service.settings.voice_enabled and attempt.country in self.policy.voice_countries
        names = ("flash", "voice") if voice_ok else ("flash",)
        return {ch: channel_key(service.id, attempt.operator, ch) for ch in names}

    def _route(self, kind: CallKind, channels: dict[str, str], counts: Counts) -> CallKind:
        if not channels:
            return kind
        by_channel = {ch: counts.get(k, (0, 0)) for ch, k in channels.items()}
        return CallKind(self.router.choose(by_channel))

    async def converted(self, service_id: int, uid: int) -> None:
        """A code was entered for authorization ``uid``: count it on the keys of its call."""
        q = (
            authorizations.select()
            .with_only_columns(a.phone)
            .where(a.id == uid, a.service_id == service_id)
        )
        async with self.db.read() as conn:
            phone = (await conn.execute(q)).scalar()
        if phone is not None:
            await self.store.convert(service_id, str(phone))


def _error(refusal: Refusal) -> UcallerError:
    if refusal.code == Code.COUNTRY_FORBIDDEN:
        return UcallerError(Code.COUNTRY_FORBIDDEN)
    return UcallerError(
        Code.SUSPECTED_FRAUD,
        f"Suspected fraud: the call was not placed ({refusal.reason})",
        retry_after=refusal.retry_after,
    )


class NoGuard:
    """For an Authorizations built without a guard: every call is admitted as asked."""

    async def admit(
        self,
        service: Service,
        account: Account,
        *,
        phone: str,
        country: str,
        kind: CallKind,
        client: str | None,
        simulated: bool,
    ) -> CallKind:
        return kind

    async def placed(self) -> None:
        return None
