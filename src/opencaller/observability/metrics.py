"""Prometheus metrics. Several uvicorn workers share them through prometheus_client's
multiprocess mode: set PROMETHEUS_MULTIPROC_DIR (``serve --workers N`` does it) and every
process writes its values there, and ``/metrics`` on any of them reports the sum."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
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


def render(queue: QueueDepth | None = None, probes: Probes | None = None) -> bytes:
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

WRITE_BATCH_SIZE = Histogram(
    "opencaller_write_batch_size",
    "Requests written together by one batched write (1: alone), by operation.",
    ["operation"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WRITE_BATCH_FAILURES = Counter(
    "opencaller_write_batch_failures_total",
    "Batched writes that failed as a whole and were written again one by one, by operation.",
    ["operation"],
)
