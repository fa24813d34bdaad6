"""When to send a request again, and how long to wait first.

Only failures that say nothing happened, or that a repeat cannot double, are retried: the
per-second limit (429), server errors (500, HTTP 5xx) and transport failures. The caller
decides whether a request is safe to repeat at all; see ``_core`` for which methods are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import LimitError, ServerError, UcallerAPIError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in total, the first one included
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    max_backoff: float = 8.0
    # A longer Retry-After than this is not waited for: the error goes to the caller.
    max_retry_after: float = 60.0

    def retryable(self, err: UcallerAPIError) -> bool:
        if isinstance(err, LimitError):
            return err.code == 429
        return isinstance(err, ServerError)

    def delay(self, attempt: int, err: UcallerAPIError) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up."""
        if attempt >= self.attempts or not self.retryable(err):
            return None
        if err.retry_after is not None:
            return err.retry_after if err.retry_after <= self.max_retry_after else None
        step = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        # Half fixed, half random: spreads clients that failed together.
        return step / 2 + random.uniform(0, step / 2)


NO_RETRY = RetryPolicy(attempts=1)
