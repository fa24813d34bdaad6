"""The process's Redis client, built so that a Redis restart or failover costs no answers.

- Short connect and read timeouts: a frozen Redis (a stopped process, a lost network) makes
  a command fail within the timeout instead of hanging the request that sent it.
- A retry with a short backoff on *connection* errors only: a pooled connection that died
  with the old server (restart, failover) is dropped and the command goes out again on a
  fresh one. Timeouts are not retried: the command may have run, and waiting again would
  only stretch the request. Retrying the limit script after a connection error can record
  an authorization twice — the direction of refusing, never of letting a call through.
- A health check before reusing a connection that sat idle, and TCP keepalive, so most dead
  connections are found before a request needs them.
- Sentinel: the client asks the sentinels for the current primary and, when a primary
  refuses writes (it became a replica) or goes away, asks again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


@dataclass(frozen=True, slots=True)
class RedisOptions:
    url: str | None = None
    sentinels: list[str] = field(default_factory=list)  # "host:port" of each sentinel
    sentinel_master: str = "mymaster"
    socket_timeout_s: float = 0.5
    connect_timeout_s: float = 0.5
    health_check_interval_s: float = 5.0
    retries: int = 2

    @property
    def configured(self) -> bool:
        return bool(self.url or self.sentinels)


def _retry(retries: int) -> Retry:
    return Retry(
        ExponentialBackoff(cap=0.2, base=0.02), retries, supported_errors=(RedisConnectionError,)
    )


def _address(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not host:
        return spec, 26379
    return host.strip("[]"), int(port)


def connect(options: RedisOptions) -> aioredis.Redis:
    common: dict[str, Any] = {
        "socket_timeout": options.socket_timeout_s,
        "socket_connect_timeout": options.connect_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": options.health_check_interval_s,
        "retry": _retry(options.retries),
    }
    if not options.sentinels:
        assert options.url, "Redis needs redis_url or redis_sentinels"
        return aioredis.Redis.from_url(options.url, **common)
    # With sentinels, redis_url (optional) only carries the database number and credentials
    # of the primary, e.g. redis://:secret@/2.
    auth: dict[str, Any] = {}
    if options.url:
        parsed = parse_url(options.url)
        auth = {k: v for k, v in parsed.items() if k in ("db", "username", "password")}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [_address(s) for s in options.sentinels],
        sentinel_kwargs={
            "socket_timeout": options.socket_timeout_s,
            "socket_connect_timeout": options.connect_timeout_s,
        },
        **common,
        **auth,
    )
    client: aioredis.Redis = sentinel.master_for(
        options.sentinel_master, redis_class=aioredis.Redis
    )
    return client
