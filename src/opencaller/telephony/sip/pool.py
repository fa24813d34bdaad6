"""Choosing the flash-call caller ID: a number of ours whose last four digits are the code."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

from opencaller.telephony.sip.config import CallerIdPool

CODE_DIGITS = 4
BLOCK = 10**CODE_DIGITS
RANGE_TRIES = 8  # random heads tried per range when some of its prefixes are out


class CallerIdChooser:
    def __init__(self, pool: CallerIdPool) -> None:
        self.prefixes = list(pool.prefixes)
        self.ranges: list[tuple[int, int, int]] = []  # (first, last, digit count)
        for r in pool.ranges:
            a, b = r.split("-")
            self.ranges.append((int(a), int(b), len(a)))
        self.by_ending: dict[str, list[str]] = defaultdict(list)
        for n in pool.numbers:
            if len(n) > CODE_DIGITS:
                self.by_ending[n[-CODE_DIGITS:]].append(n)
        # Prefixes (the number without its code) taken out of the pool for now, e.g. by
        # prefix_pool.PrefixHealth.blocked when their ring rate collapsed.
        self.exclude: Callable[[str], bool] | None = None

    def candidates_from_ranges(self, code: str) -> list[tuple[int, int, int]]:
        """Ranges that hold a number ending in ``code``, as (first head, last head, width)."""
        c = int(code)
        out = []
        for a, b, width in self.ranges:
            first, last = a // BLOCK, b // BLOCK
            if a % BLOCK > c:
                first += 1
            if b % BLOCK < c:
                last -= 1
            if first <= last:
                out.append((first, last, width))
        return out

    def why_not(self, code: str) -> str | None:
        if len(code) != CODE_DIGITS or not code.isdigit():
            return f"the flash-call code must be {CODE_DIGITS} digits"
        if self.prefixes or self.by_ending.get(code) or self.candidates_from_ranges(code):
            return None
        if not (self.ranges or self.by_ending):
            return "no caller-ID pool is configured for flash calls"
        return f"no number in the caller-ID pool ends in {code}"

    def why_not_now(self, code: str) -> str | None:
        """``why_not``, and also when every number for ``code`` is out of the pool for now."""
        why = self.why_not(code)
        if why is None and self.exclude is not None and self.pick(code) is None:
            return f"every caller-ID prefix for {code} is out of the pool (ring rate collapsed)"
        return why

    def _usable(self, number: str) -> bool:
        return self.exclude is None or not self.exclude(number[:-CODE_DIGITS])

    def pick(self, code: str) -> str | None:
        """A random number of the pool ending in ``code`` (spreads load over the pool)."""
        if self.why_not(code) is not None:
            return None
        options: list[str] = [p + code for p in self.prefixes]
        options += self.by_ending.get(code, [])
        options = [n for n in options if self._usable(n)]
        for first, last, width in self.candidates_from_ranges(code):
            for _ in range(RANGE_TRIES if self.exclude is not None else 1):
                n = str(random.randint(first, last) * BLOCK + int(code)).zfill(width)
                if self._usable(n):
                    options.append(n)
                    break
        return random.choice(options) if options else None
