"""Who is calling: a service's secret key checked in constant time, then the state of the
service and its account, the IP allow-list, and the per-second limit.

An unknown service id and a wrong key for a known one take the same path (the same reads,
cached alike, a comparison against a key of the same length, the same failure counting), so
the answer and its timing do not tell whether a service id exists."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from dataclasses import dataclass

from cachetools import LRUCache

from ..errors import Code, UcallerError
from ..storage.database import Database
from .accounts import Account, Service, get_account, get_service, new_secret_key
from .phones import as_id
from .throttle import Counters

# Services whose key and settings one node keeps (LRU): only services that exist are cached,
# so this bounds memory on installations with very many services, not against clients.
MAX_CACHED_SERVICES = 10_000


@dataclass(frozen=True, slots=True)
class Caller:
    service: Service
    account: Account


class Authenticator:
    def __init__(
        self,
        db: Database,
        counters: Counters,
        *,
        cache_s: float = 1.0,
        max_cached: int = MAX_CACHED_SERVICES,
    ) -> None:
        self.db = db
        self.counters = counters
        self.cache_s = cache_s
        # service id -> (loaded at, service, account); a short cache keeps one read off
        # every request, and changes made in the dashboard apply within cache_s.
        # Unknown ids are cached too, so they are not told apart by a cache miss.
        self._cache: LRUCache[int, tuple[float, tuple[Service, Account] | None]] = LRUCache(
            maxsize=max_cached
        )
        # Requests that miss the cache together share one read instead of one each.
        self._loading: dict[int, asyncio.Task[tuple[Service, Account] | None]] = {}
        self._dummy_key = new_secret_key()

    def forget(self, service_id: int | None = None) -> None:
        if service_id is None:
            self._cache.clear()
        else:
            self._cache.pop(service_id, None)

    async def _load(self, service_id: int) -> tuple[Service, Account] | None:
        now = time.monotonic()
        hit = self._cache.get(service_id)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        task = self._loading.get(service_id)
        if task is None:
            task = asyncio.ensure_future(self._read(service_id, now))
            self._loading[service_id] = task
            task.add_done_callback(lambda _: self._loading.pop(service_id, None))
        return await asyncio.shield(task)

    async def _read(self, service_id: int, now: float) -> tuple[Service, Account] | None:
        async with self.db.read() as conn:
            service = await get_service(conn, service_id)
            # Read an account even for an unknown service (id 0 never exists): same round trips.
            account = await get_account(conn, service.account_id if service else 0)
        loaded = (service, account) if service is not None and account is not None else None
        if self.cache_s > 0:
            self._cache[service_id] = (now, loaded)
        return loaded

    async def authenticate(self, key: object, service_id: object, ip: str, now: float) -> Caller:
        loaded = None
        sid = as_id(service_id)
        given = _key_bytes(key)
        if given is not None and sid is not None:
            loaded = await self._load(sid)
        expected = loaded[0].secret_key if loaded is not None else self._dummy_key
        # Compared even when nothing was loaded, against a key of the same length.
        matches = hmac.compare_digest(given or b"", expected.encode())
        if loaded is None or not matches:
            blocked = await self.counters.blocked_for(ip, now)
            if blocked is not None:
                raise UcallerError(Code.IP_BLOCKED, retry_after=blocked)
            await self.counters.auth_failed(ip, now)
            raise UcallerError(Code.AUTH_FAILED)
        service, account = loaded
        # A blocked IP is refused even with the right key; the block and the per-second
        # count are one round trip.
        blocked, wait = await self.counters.admit(
            ip, f"svc:{service.id}", service.settings.rps_limit, now
        )
        if blocked is not None:
            raise UcallerError(Code.IP_BLOCKED, retry_after=blocked)
        if service.archived:
            raise UcallerError(Code.SERVICE_ARCHIVED)
        if not service.enabled:
            raise UcallerError(Code.SERVICE_DISABLED)
        if service.settings.ip_allowlist and not _ip_allowed(ip, service.settings.ip_allowlist):
            raise UcallerError(Code.IP_FORBIDDEN)
        if account.blocked:
            raise UcallerError(Code.ACCOUNT_BLOCKED)
        if wait is not None:
            raise UcallerError(Code.TOO_MANY_REQUESTS, retry_after=wait)
        return Caller(service, account)


def _key_bytes(raw: object) -> bytes | None:
    """The key as sent (a string, or a number some clients make of it), else None."""
    if isinstance(raw, bool) or raw is None or raw == "":
        return None
    if isinstance(raw, (str, int)):
        # A header arrives as latin-1 text; JSON may carry lone surrogates: never raise here.
        return str(raw).encode("utf-8", "replace")
    return None


def _ip_allowed(ip: str, allowlist: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in allowlist:
        try:
            if addr in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False
