"""Which of a trunk's resolved addresses to try first: the ones that answered lately.

An address that did not answer (no response, a refused connection, a 5xx) is tried last for
``down_s`` seconds. Without this, a silent SRV primary would cost every call its full
progress timeout before the next address is tried (RFC 3263 §4.3 leaves the caching of
failures to the client; Kamailio's dst_blocklist does the same).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")

MAX_REMEMBERED = 1024  # addresses come from DNS, which could rotate through many


class TargetHealth:
    def __init__(self, down_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.down_s = down_s
        self.clock = clock
        self._down_until: dict[Hashable, float] = {}

    def __len__(self) -> int:
        """How many addresses are remembered (down, or down until lately)."""
        return len(self._down_until)

    def order(self, targets: Sequence[T], key: Callable[[T], Hashable]) -> list[T]:
        """``targets`` in their order, those marked down moved to the end (still tried)."""
        now = self.clock()
        return sorted(targets, key=lambda t: self._down_until.get(key(t), 0.0) > now)

    def failed(self, key: Hashable) -> None:
        now = self.clock()
        if len(self._down_until) >= MAX_REMEMBERED:
            self._down_until = {k: t for k, t in self._down_until.items() if t > now}
            if len(self._down_until) >= MAX_REMEMBERED:
                self._down_until.clear()
        self._down_until[key] = now + self.down_s

    def answered(self, key: Hashable) -> None:
        self._down_until.pop(key, None)

    def is_down(self, key: Hashable) -> bool:
        return self._down_until.get(key, 0.0) > self.clock()
