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

CONTENT_TYPE = CONTENT_TYPE_LATEST


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


def render(queue: QueueDepth | None = None) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        out = generate_latest(registry)
    else:
        out = generate_latest(REGISTRY)
    if queue is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(queue)
        out += generate_latest(extra)
    return out
