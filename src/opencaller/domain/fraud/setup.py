"""Builds the fraud guard (domain/fraud) from Settings: its counters, list and router."""

from __future__ import annotations

from ...config import FraudSettings
from ...numbering import InvalidPhoneNumber, PhoneDirectory
from ...storage.database import Database
from ...storage.redis_counters import RedisCounters
from ...storage.redis_fraud import RedisFraudCounters
from ..clock import Clock
from .counters import CounterStore, DbCounters, FallbackCounters
from .decisions import Thresholds
from .guard import Guard, GuardPolicy
from .ranges import load
from .routing import Router


def thresholds(s: FraudSettings) -> Thresholds:
    return Thresholds(
        min_conversion=s.min_conversion,
        minimum={
            "run": s.run_min_requests,
            "prefix8": s.prefix8_min_requests,
            "prefix7": s.prefix7_min_requests,
            "origin": s.origin_min_requests,
            "client": s.client_min_requests,
            "operator": s.operator_min_requests,
            "country": s.operator_min_requests,
        },
        broad_min_conversion=s.operator_min_conversion,
        blind_factor=s.blind_factor,
    )


def build_guard(
    s: FraudSettings,
    *,
    db: Database,
    clock: Clock,
    redis: RedisCounters | None,
    directory: PhoneDirectory,
    voice_countries: frozenset[str],
) -> Guard:
    store: CounterStore = DbCounters(db)
    if redis is not None:
        fast = RedisFraudCounters(
            redis.redis,
            prefix=redis.prefix,
            breaker=redis.breaker,
            batcher=redis.batcher,
            window_s=s.window_s,
        )
        store = FallbackCounters(fast, store)

    async def operator_of(phone: str) -> str:
        # The range holder from the numbering plan (or the number it was ported to); without
        # an imported registry, the country code and the first digits stand for it.
        try:
            info = await directory.lookup_e164(phone)
        except InvalidPhoneNumber:
            return phone[:4]
        return info.mnp_operator or info.operator or phone[:4]

    policy = GuardPolicy(
        enabled=s.enabled,
        geo=s.geo_default,
        home_countries=frozenset(c.upper() for c in s.home_countries),
        voice_countries=voice_countries,
        window_s=s.window_s,
        route_mix=s.route_mix,
        thresholds=thresholds(s),
    )
    router = Router(min_sample=s.routing_min_sample, epsilon=s.routing_epsilon, seed=s.routing_seed)
    return Guard(
        db,
        clock,
        policy,
        store=store,
        ranges=load(s.high_risk_ranges_path),
        router=router,
        operator_of=operator_of,
    )
