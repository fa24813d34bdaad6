"""Prometheus metrics. Several uvicorn workers share them through prometheus_client's
multiprocess mode: set PROMETHEUS_MULTIPROC_DIR (``serve --workers N`` does it) and every
process writes its values there, and ``/metrics`` on any of them reports the sum."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# Latency buckets from 1 ms: the API answers in milliseconds, calls take seconds.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "opencaller_requests_total",
    "API requests by uCaller method and answer (error code, or ok).",
    ["method", "code"],
)
LATENCY = Histogram(
    "opencaller_request_seconds", "Time to answer an API request.", ["method"], buckets=_FAST
)
CALLS = Counter("opencaller_calls_total", "Calls finished, by outcome.", ["outcome"])
DISPATCH_DELAY = Histogram(
    "opencaller_dispatch_delay_seconds",
    "From the authorization's creation to the provider starting the call.",
    buckets=_FAST,
)

SIP_RESPONSES = Counter(
    "opencaller_call_sip_responses_total",
    "Calls finished, by the SIP status that ended them ('none': no final response).",
    ["sip_code"],
)

# SIP trunk health (telephony/sip/health.py, registration.py, prefix_pool.py). Label values
# are bounded: trunk names come from the configuration, prefixes from our own caller-ID
# pool (at most sip.caller_id_health.max_prefixes tracked), code classes are 1xx-6xx/none.
SIP_TRUNK_REGISTERED = Gauge(
    "opencaller_sip_trunk_registered",
    "REGISTER-based trunks: 1 registered, 0 not (the trunk places no calls).",
    ["trunk"],
    multiprocess_mode="livemax",
)
SIP_TRUNK_REGISTER_CODE = Gauge(
    "opencaller_sip_trunk_register_last_code",
    "The registrar's last final answer to our REGISTER (0: none, e.g. no answer).",
    ["trunk"],
    multiprocess_mode="livemax",
)
SIP_TRUNK_STATE_SINCE = Gauge(
    "opencaller_sip_trunk_state_since_seconds",
    "Unix time the trunk's registration (kind=register) or keepalive (kind=options) state began.",
    ["trunk", "kind"],
    multiprocess_mode="livemax",
)
SIP_TRUNK_UP = Gauge(
    "opencaller_sip_trunk_up",
    "Trunks with OPTIONS keepalives: 1 up, 0 down (calls skip it).",
    ["trunk"],
    multiprocess_mode="livemax",
)
SIP_TRUNK_CALLS = Counter(
    "opencaller_sip_trunk_calls_total",
    "Call attempts per trunk, by the SIP class of the answer and whether the phone rang.",
    ["trunk", "code_class", "result"],
)
SIP_PREFIX_CALLS = Counter(
    "opencaller_sip_prefix_calls_total",
    "Flash calls per caller-ID prefix, by the SIP class of the answer and whether it rang.",
    ["prefix", "code_class", "result"],
)
SIP_PREFIX_RING_RATE = Gauge(
    "opencaller_sip_prefix_ring_rate",
    "Share of a caller-ID prefix's flash calls in the sliding window that rang.",
    ["prefix"],
    multiprocess_mode="livemin",
)
SIP_PREFIX_BLOCKED = Gauge(
    "opencaller_sip_prefix_blocked",
    "1 when a caller-ID prefix is out of the pool because its ring rate collapsed.",
    ["prefix"],
    multiprocess_mode="livemax",
)


def code_class(code: int | None) -> str:
    return f"{code // 100}xx" if code is not None and 100 <= code <= 699 else "none"


# A batch statement that fails is logged and its rows written one at a time: correct, only
# slower; a rise here is a statement broken (a schema change, a bad value), not an outage.
WRITE_BATCH_FAILURES = Counter(
    "opencaller_write_batch_failures_total",
    "Batched writes that failed and were retried one row at a time, by operation.",
    ["operation"],
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def sip_label(code: int | None) -> str:
    """A SIP status comes from the far end: only the 100-699 range becomes a label value."""
    return str(code) if code is not None and 100 <= code <= 699 else "none"


class QueueDepth(Collector):
    """Reports the depth measured right before the scrape (see wire/app.py)."""

    def __init__(self) -> None:
        self.depth: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        g = GaugeMetricFamily(
            "opencaller_queue_depth", "Authorizations by dispatch state.", labels=["state"]
        )
        for state, n in sorted(self.depth.items()):
            g.add_metric([state], n)
        yield g


class Probes(Collector):
    """Gauges measured right before the scrape (observability/probes.py): what an operator
    must see even when no request flows, read from the database and Redis themselves."""

    def __init__(self) -> None:
        self.up: dict[str, int] = {}  # dependency -> 1 reachable, 0 not
        self.oldest: dict[str, float] = {}  # dispatch state -> age (s) of its oldest row
        self.expired_leases: int | None = None
        self.webhooks: dict[str, int] = {}  # outbox state -> rows
        self.webhook_retrying: int | None = None
        self.webhook_oldest_pending: float | None = None
        self.status_events: dict[str, int] = {}  # status webhooks' outbox state -> rows
        self.status_oldest_pending: float | None = None

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "opencaller_dependency_up",
            "1 when the dependency answered a ping at the scrape (2 s timeout), else 0.",
            labels=["dependency"],
        )
        for name, v in sorted(self.up.items()):
            up.add_metric([name], v)
        yield up
        oldest = GaugeMetricFamily(
            "opencaller_queue_oldest_seconds",
            "Age of the oldest authorization in each dispatch state (queued and waiting: since"
            " creation; dialing: since dialling started); 0 when there is none.",
            labels=["state"],
        )
        for state, age in sorted(self.oldest.items()):
            oldest.add_metric([state], age)
        yield oldest
        if self.expired_leases is not None:
            yield GaugeMetricFamily(
                "opencaller_dialing_expired_leases",
                "Calls still dialing after their worker's lease ran out: outcomes overdue.",
                value=self.expired_leases,
            )
        hooks = GaugeMetricFamily(
            "opencaller_webhook_outbox",
            "Webhook deliveries waiting (pending) or given up on (failed) in the outbox.",
            labels=["state"],
        )
        for state, n in sorted(self.webhooks.items()):
            hooks.add_metric([state], n)
        yield hooks
        if self.webhook_retrying is not None:
            yield GaugeMetricFamily(
                "opencaller_webhook_retrying",
                "Pending webhook deliveries that have failed at least once.",
                value=self.webhook_retrying,
            )
        if self.webhook_oldest_pending is not None:
            yield GaugeMetricFamily(
                "opencaller_webhook_oldest_pending_seconds",
                "Age of the oldest pending webhook delivery; 0 when there is none.",
                value=self.webhook_oldest_pending,
            )
        status = GaugeMetricFamily(
            "opencaller_status_events",
            "Status webhook events waiting (pending) or given up on (failed).",
            labels=["state"],
        )
        for state, n in sorted(self.status_events.items()):
            status.add_metric([state], n)
        yield status
        if self.status_oldest_pending is not None:
            yield GaugeMetricFamily(
                "opencaller_status_events_oldest_pending_seconds",
                "Age of the oldest pending status webhook event; 0 when there is none.",
                value=self.status_oldest_pending,
            )


def render(queue: QueueDepth | None = None, probes: Probes | None = None) -> bytes:
    # prometheus_client's own variable (its multiprocess mode), not one of our settings.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        out = generate_latest(registry)
    else:
        out = generate_latest(REGISTRY)
    extra = CollectorRegistry(auto_describe=False)
    for collector in (queue, probes):
        if collector is not None:
            extra.register(collector)
    return out + generate_latest(extra)


# Conversion (verified ÷ initiated), labelled by channel (flash, voice, mix, inbound) and
# country (ISO code): both sets are small and fixed, so the series stay few however many
# services there are. Per service, day and operator, conversion is on the dashboard's
# statistics page instead (a service id label would grow with every customer). Initiated
# counts new authorizations, not free repeats: a chain of repeats is one verification.
AUTHORIZATIONS = Counter(
    "opencaller_authorizations_total",
    "Verifications started (new authorizations, repeats excluded), by channel and country.",
    ["channel", "country"],
)
VERIFIED = Counter(
    "opencaller_verified_total",
    "Verifications confirmed (verifyCode's right code, or the inbound call), by channel and"
    " country.",
    ["channel", "country"],
)


class Verification(Protocol):
    """What the conversion counters read of an authorization (domain/records.py)."""

    @property
    def kind(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def country_iso(self) -> str: ...
    @property
    def is_test(self) -> bool: ...


def _labels(auth: Verification) -> tuple[str, str]:
    return ("inbound" if auth.direction == "in" else auth.kind), (auth.country_iso or "unknown")


def count_initiated(auth: Verification) -> None:
    """A new verification (TEST numbers are left out, as on the dashboard)."""
    if not auth.is_test:
        AUTHORIZATIONS.labels(*_labels(auth)).inc()


def count_verified(auth: Verification) -> None:
    """The chain's original, as verified (by verifyCode or its inbound call)."""
    if not auth.is_test:
        VERIFIED.labels(*_labels(auth)).inc()


WRITE_BATCH_SIZE = Histogram(
    "opencaller_write_batch_size",
    "Requests written together by one batched write (1: alone), by operation.",
    ["operation"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
