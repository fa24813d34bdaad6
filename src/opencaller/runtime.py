"""Assembles a running opencaller from Settings: database, provider, rules, dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .config import Settings
from .dispatch.dispatcher import Dispatcher
from .dispatch.wakeup import Listener, Notifier
from .domain import limits, retention
from .domain.authentication import Authenticator
from .domain.authorizations import Authorizations, Policy
from .domain.clock import Clock
from .domain.fraud.setup import build_guard
from .domain.inbound import InboundVerifications
from .domain.throttle import Counters, MemoryCounters
from .domain.throttle_fallback import FallbackCounters
from .numbering import PhoneDirectory, places
from .observability import metrics
from .storage.database import Database
from .storage.db import DbTimeouts
from .storage.redis_breaker import RedisBreaker
from .storage.redis_client import RedisOptions, connect
from .storage.redis_counters import RedisCounters
from .storage.redis_limits import RedisLimits, Windows
from .telephony.base import CallReport, InboundCall, Provider
from .telephony.simulator import Simulator
from .webhooks.deliverer import WebhookDeliverer
from .webhooks.destinations import DestinationPolicy
from .webhooks.status import StatusDeliverer

log = logging.getLogger("opencaller")


def limit_windows() -> Windows:
    """The limits' numbers (domain/limits.py owns them) for the Redis store."""
    return Windows(
        per_minute=limits.PER_MINUTE,
        per_day=limits.PER_DAY,
        min_gap_s=limits.MIN_GAP_S,
        minute_s=limits.MINUTE,
        day_s=limits.DAY,
        hour_s=limits.HOUR,
    )


def redis_options(settings: Settings) -> RedisOptions:
    return RedisOptions(
        url=settings.redis_url,
        sentinels=list(settings.redis_sentinels),
        sentinel_master=settings.redis_sentinel_master,
        socket_timeout_s=settings.redis_socket_timeout_s,
        connect_timeout_s=settings.redis_connect_timeout_s,
        health_check_interval_s=settings.redis_health_check_interval_s,
    )


def build_provider(settings: Settings, simulator: Simulator) -> Provider:
    if settings.provider == "sip":
        from .telephony.sip.provider import from_settings

        return from_settings(
            settings.sip, espeak=settings.espeak, espeak_timeout_s=settings.espeak_timeout_s
        )
    return simulator


async def _count_sip_response(_ucaller_id: int, report: CallReport) -> None:
    metrics.SIP_RESPONSES.labels(metrics.sip_label(report.sip_code)).inc()


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        dispatch: bool = True,
        provider: Provider | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        timeouts = DbTimeouts(
            connect_s=settings.db_connect_timeout_s,
            statement_s=settings.db_statement_timeout_s,
            acquire_s=settings.db_acquire_timeout_s,
        )
        self.db = Database(
            settings.database_url, pool_size=settings.db_pool_size, timeouts=timeouts
        )
        self.redis: RedisCounters | None = None
        options = redis_options(settings)
        if counters is None and options.configured:
            client = connect(options)
            # A probe may go through the sentinels first: a few round trips.
            probe_timeout = 2 * (options.connect_timeout_s + options.socket_timeout_s) + 0.5
            breaker = RedisBreaker(
                client,
                probe_interval_s=settings.redis_probe_interval_s,
                probe_timeout_s=probe_timeout,
            )
            self.redis = RedisCounters(
                options.url or "", prefix=settings.redis_prefix, client=client, breaker=breaker
            )
        self.counters: Counters = counters or (
            FallbackCounters(self.redis, MemoryCounters()) if self.redis else MemoryCounters()
        )
        self.simulator = Simulator(settings.simulator)
        self.provider: Provider = provider or build_provider(settings, self.simulator)
        # Place names: built once per machine by a child process, then read from a file; at
        # startup, so the first request does not wait for it.
        places.configure(settings.cache_dir)
        places.warm()
        self.directory = PhoneDirectory(self.db.reader, fetch=self.db.fetch_one)
        self.auth = Authenticator(self.db, self.counters, cache_s=settings.auth_cache_s)
        self.dispatcher: Dispatcher | None = None
        if dispatch:
            # Leases measure whether a process is alive: always wall-clock time.
            self.dispatcher = Dispatcher(
                self.db,
                self.provider,
                self.simulator,
                Clock(),
                lease_s=settings.lease_s,
                concurrency=settings.dispatch_concurrency,
                poll_interval_s=settings.poll_interval_s,
                lease_grace_s=settings.lease_grace_s,
                on_final=_count_sip_response,
                status_refresh_s=settings.auth_cache_s,
            )
        # Across processes (PostgreSQL only): API nodes without a dispatcher tell the workers
        # that a call is queued; processes with a dispatcher listen.
        self.notifier: Notifier | None = None
        self.listener: Listener | None = None
        if not self.db.sqlite:
            if self.dispatcher is None:
                self.notifier = Notifier(settings.database_url, timeouts=timeouts)
            else:
                self.listener = Listener(
                    settings.database_url, self.dispatcher.wake, timeouts=timeouts
                )
        self.policy = Policy(
            test_numbers=frozenset(settings.test_numbers),
            test_ranges=tuple(settings.test_ranges),
            voice_countries=frozenset(settings.voice_countries),
            require_verified_phone=settings.require_verified_phone,
        )
        self.fraud = build_guard(
            settings.fraud,
            db=self.db,
            clock=self.clock,
            redis=self.redis,
            directory=self.directory,
            voice_countries=self.policy.voice_countries,
        )
        self.authorizations = Authorizations(
            self.db,
            self.clock,
            self.policy,
            check_call=self.provider.check,
            notify=self._notify,
            confirmation_number=self.provider.confirmation_number,
            limit_store=self._limit_store(),
            guard=self.fraud,
        )
        self.inbound = InboundVerifications(
            self.db, self.authorizations, self.directory, self.clock
        )
        # Where callback URLs may point: checked when given (wire) and when delivered.
        self.webhook_destinations = DestinationPolicy.from_settings(
            settings.webhook_allowed_networks
        )
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    def _limit_store(self) -> RedisLimits | None:
        """With Redis, the per-number and per-service limits are kept there (one round trip
        per initCall, no locks in the database); without it, the database counts them."""
        if self.redis is None:
            return None
        store = RedisLimits(
            self.redis.batcher,
            prefix=self.redis.prefix,
            windows=limit_windows(),
            breaker=self.redis.breaker,
            establish=self._complete_since,
        )

        async def recovered() -> None:
            # Redis missed what the database counted meanwhile: both count for a while.
            await store.recovered(self.clock.now())

        async def scripts_lost() -> None:
            await store.scripts_lost(self.clock.now())

        self.redis.breaker.on_recover(recovered)
        self.redis.batcher.on_scripts_lost.append(scripts_lost)
        return store

    async def _complete_since(self, now: float) -> float:
        async with self.db.read() as conn:
            return await limits.complete_since(conn, now)

    def _notify(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()
        elif self.notifier is not None:
            self.notifier.poke()

    async def healthy(self) -> tuple[bool, bool]:
        """(database, providers) — not Redis: without it the node still answers every
        method (the database counts the limits), so it must stay in the load balancer."""
        database = await self.db.ping()
        try:
            providers = await self.provider.healthy()
        except Exception:
            providers = False
        return database, providers

    async def start(self) -> None:
        # Only processes that place calls open the trunk and answer inbound calls; API-only
        # nodes use the provider's configuration (pools, confirmation numbers) and nothing else.
        if self.dispatcher is None:
            return
        self.provider.on_inbound(self._inbound)
        await self.provider.start()
        if self.provider is not self.simulator:
            await self.simulator.start()
        await self.dispatcher.start()
        if self.listener is not None:
            await self.listener.start()
        deliverer = WebhookDeliverer(
            self.db.writer,
            policy=self.webhook_destinations,
            poll_interval_s=0.5,
            base_backoff_s=self.settings.webhook_backoff_s,
            lease_s=self.settings.webhook_lease_s,
            timeout_s=self.settings.webhook_timeout_s,
        )
        self._background.append(asyncio.create_task(deliverer.run(self._stop)))
        status = StatusDeliverer(
            self.db.writer,
            policy=self.webhook_destinations,
            poll_interval_s=0.5,
            base_backoff_s=self.settings.webhook_backoff_s,
            lease_s=self.settings.webhook_lease_s,
            timeout_s=self.settings.webhook_timeout_s,
        )
        self._background.append(asyncio.create_task(status.run(self._stop)))
        self._background.append(asyncio.create_task(self._purge_periodically()))

    async def _purge_periodically(self) -> None:
        s = self.settings
        await retention.run_periodically(
            self.db,
            self.clock,
            self._stop,
            retention_days=s.retention_days,
            webhook_retention_days=s.webhook_retention_days,
            interval_s=s.retention_interval_s,
            batch=s.retention_batch,
        )

    async def _inbound(self, call: InboundCall) -> None:
        await self.inbound.on_call(call)

    async def stop(self) -> None:
        self._stop.set()
        if self.listener is not None:
            await self.listener.close()
        if self.dispatcher is not None:
            await self.dispatcher.stop(drain_s=self.settings.drain_s)
            await self.provider.close()
        if self.notifier is not None:
            await self.notifier.close()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 5)
        if self.redis is not None:
            await self.redis.close()
        await self.db.close()
