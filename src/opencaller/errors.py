"""uCaller error codes and their wire messages.

Every application error leaves as HTTP 200 with ``{"status": false, "error": ..., "code": n}``
(see docs/compatibility.md for why). ``retry_after`` becomes a ``Retry-After`` header.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    IP_BLOCKED = 0
    BAD_REQUEST = 1
    BAD_PARAMETER = 2
    BAD_PHONE = 3
    SERVICE_DISABLED = 4
    INIT_FAILED = 5
    COUNTRY_FORBIDDEN = 9
    NO_SUCH_ID = 10
    REPEAT_EXPIRED = 11
    REPEAT_LIMIT = 12
    REPEAT_INVALID = 13
    NUMBER_LIMIT = 18
    NUMBER_WAIT = 19
    VOICE_UNAVAILABLE = 20
    HOURLY_LIMIT = 50
    # opencaller's own (verifyCode, spec §14); uCaller uses none of 60-64
    WRONG_CODE = 60
    NO_ATTEMPTS_LEFT = 61
    CODE_EXPIRED = 62
    ALREADY_VERIFIED = 63
    SUSPECTED_FRAUD = 64  # the fraud guard (domain/fraud) refused to place the call
    AUTH_FAILED = 401
    METHOD_NOT_SUPPORTED = 405
    TOO_MANY_REQUESTS = 429
    INTERNAL = 500
    ACCOUNT_BLOCKED = 1001
    LOW_BALANCE = 1002
    IP_FORBIDDEN = 1003
    SERVICE_ARCHIVED = 1004
    PHONE_NOT_VERIFIED = 1005


MESSAGES: dict[Code, str] = {
    Code.IP_BLOCKED: "Your IP address is blocked",
    Code.BAD_REQUEST: "Invalid request. Check the request syntax and the list of parameters",
    Code.BAD_PARAMETER: "A required parameter is missing or invalid",
    Code.BAD_PHONE: "Invalid phone number",
    Code.SERVICE_DISABLED: "Your service is disabled in its settings",
    Code.INIT_FAILED: "Error while initializing the authorization",
    Code.COUNTRY_FORBIDDEN: "Authorization for this country is forbidden by the service's geography"
    " settings",
    Code.NO_SUCH_ID: "This id does not exist or you have no access to it",
    Code.REPEAT_EXPIRED: "The authorization cannot be repeated for free: time expired",
    Code.REPEAT_LIMIT: "The authorization cannot be repeated for free: limit exhausted",
    Code.REPEAT_INVALID: "Erroneous attempt to start a free repeat of the authorization",
    Code.NUMBER_LIMIT: "Limit of 4 outgoing calls per minute or 30 calls per day for one number"
    " reached",
    Code.NUMBER_WAIT: "Wait 15 seconds before authorizing the same number again",
    Code.VOICE_UNAVAILABLE: "Voice authorization is not available for this country",
    Code.HOURLY_LIMIT: "Hourly authorization limit exceeded. Limits are set in the service"
    " settings",
    Code.WRONG_CODE: "Wrong code",
    Code.NO_ATTEMPTS_LEFT: "No attempts left to check a code for this authorization",
    Code.CODE_EXPIRED: "The code has expired; start a new authorization",
    Code.ALREADY_VERIFIED: "The authorization is already verified; this is not its code",
    Code.SUSPECTED_FRAUD: "Suspected fraud: the call was not placed",
    Code.AUTH_FAILED: "Authentication failed. Make sure you are using the correct authentication"
    " scheme. (https://developer.ucaller.ru/)",
    Code.METHOD_NOT_SUPPORTED: "Method not supported",
    Code.TOO_MANY_REQUESTS: "Too many requests per second",
    Code.INTERNAL: "Internal server error. Please retry the request later",
    Code.ACCOUNT_BLOCKED: "Your account is blocked",
    Code.LOW_BALANCE: "Insufficient funds on the account balance",
    Code.IP_FORBIDDEN: "Requests to this service's API are not allowed from this IP",
    Code.SERVICE_ARCHIVED: "The service is archived",
    Code.PHONE_NOT_VERIFIED: "Phone number verification in the dashboard is required",
}


class UcallerError(Exception):
    """An error the client should see as the uCaller error object."""

    def __init__(
        self,
        code: Code,
        error: str | None = None,
        *,
        retry_after: int | None = None,
        extra: dict[str, object] | None = None,
    ):
        self.code = code
        self.error = error or MESSAGES[code]
        self.retry_after = retry_after
        self.extra = extra  # fields an extension adds to the error object (attempts_left)
        super().__init__(f"{int(code)}: {self.error}")

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"status": False, "error": self.error, "code": int(self.code)}
        if self.extra:
            body.update(self.extra)
        return body
