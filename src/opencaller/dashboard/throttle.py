"""Sign-in throttling: failed attempts counted per IP and per e-mail in a sliding window.

Kept in memory on each node, like the API's own failure counters (domain/throttle.py): it
slows down password guessing; it is not an accounting record.
"""

from __future__ import annotations

from collections import deque

from cachetools import LRUCache

MAX_KEYS = 50_000


class LoginThrottle:
    def __init__(
        self,
        *,
        per_email: int = 5,
        per_ip: int = 20,
        window_s: float = 900.0,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.per_email = per_email
        self.per_ip = per_ip
        self.window_s = window_s
        self._fails: LRUCache[str, deque[float]] = LRUCache(maxsize=max_keys)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            q = self._fails[key] = deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def blocked(self, ip: str, email: str, now: float) -> bool:
        return (
            len(self._recent(f"ip:{ip}", now)) >= self.per_ip
            or len(self._recent(f"email:{email}", now)) >= self.per_email
        )

    def failed(self, ip: str, email: str, now: float) -> None:
        self._recent(f"ip:{ip}", now).append(now)
        self._recent(f"email:{email}", now).append(now)

    def succeeded(self, email: str) -> None:
        self._fails.pop(f"email:{email}", None)
