"""Exceptions raised by the client: one class per family of uCaller error codes (spec §4.3).

Every exception carries the numeric ``code`` and the server's ``message``; catch the family
(``LimitError``) rather than comparing codes where possible. Codes no family claims (405, the
old widget codes, future ones) arrive as the base ``UcallerAPIError``.
"""

from __future__ import annotations

from typing import Any


class UcallerAPIError(Exception):
    """A uCaller error object, a failed HTTP exchange, or an unreadable answer."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        # Seconds the server asked us to wait (Retry-After), when it said so.
        self.retry_after = retry_after
        self.body = body
        super().__init__(f"{code}: {message}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class AuthError(UcallerAPIError):
    """Wrong key or service id, blocked IP (0) or an IP not allowed for the service (1003)."""


class LimitError(UcallerAPIError):
    """Per-number (18, 19), hourly (50) or per-second (429) limits."""


class BalanceError(UcallerAPIError):
    """Not enough money on the account (1002)."""


class NotFoundError(UcallerAPIError):
    """The uCaller id does not exist or belongs to another service (10)."""


class RepeatError(UcallerAPIError):
    """A free repeat is impossible: expired (11), exhausted (12) or refused (13)."""


class ValidationError(UcallerAPIError):
    """The request itself is wrong: syntax, parameters, phone, country or voice (1, 2, 3, 9, 20)."""


class ServiceError(UcallerAPIError):
    """The service or account cannot work right now: disabled, blocked, archived (4, 5, 1001…)."""


class CodeError(UcallerAPIError):
    """verifyCode (opencaller's extension) refused the code: wrong (60), no attempts left (61),
    expired (62), or another code after the authorization was verified (63)."""

    @property
    def attempts_left(self) -> int | None:
        left = (self.body or {}).get("attempts_left")
        return left if isinstance(left, int) and not isinstance(left, bool) else None


class ServerError(UcallerAPIError):
    """The server failed (500, HTTP 5xx) or could not be reached at all."""


FAMILIES: dict[int, type[UcallerAPIError]] = {
    **dict.fromkeys((401, 0, 1003), AuthError),
    **dict.fromkeys((18, 19, 50, 429), LimitError),
    1002: BalanceError,
    10: NotFoundError,
    **dict.fromkeys((11, 12, 13), RepeatError),
    **dict.fromkeys((1, 2, 3, 9, 20), ValidationError),
    **dict.fromkeys((4, 1001, 1004, 1005, 5), ServiceError),
    **dict.fromkeys((60, 61, 62, 63), CodeError),
    500: ServerError,
}


def error_for(
    code: int,
    message: str,
    *,
    http_status: int | None = None,
    retry_after: float | None = None,
    body: dict[str, Any] | None = None,
) -> UcallerAPIError:
    """The exception for an error ``code``, of its family's class."""
    cls = FAMILIES.get(code, UcallerAPIError)
    return cls(code, message, http_status=http_status, retry_after=retry_after, body=body)
