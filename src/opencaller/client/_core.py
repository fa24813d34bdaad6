"""The one place that knows the wire: builds requests, reads answers, decides on retries.

Each API call is written once, as a generator that yields what it needs done (``Send`` a
request, ``Sleep`` a while) and receives the outcome. The sync and async clients only run
these generators with blocking or awaiting I/O, so their behaviour cannot drift apart.
"""

from __future__ import annotations

import email.utils
import re
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pydantic

from .. import __version__
from .errors import ServerError, UcallerAPIError, error_for
from .models import (
    ApiModel,
    CheckPhone,
    GetAccount,
    GetBalance,
    GetInfo,
    GetService,
    Health,
    InboundCallWaiting,
    InitCall,
    InitRepeat,
    VerifyCode,
)
from .retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.ucaller.ru/"
DEFAULT_TIMEOUT = 10.0

M = TypeVar("M", bound=ApiModel)
T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Outcome:
    response: httpx.Response | None = None
    error: httpx.TransportError | None = None


Step = Send | Sleep
# Yields steps; receives an Outcome after a Send and None after a Sleep; returns the result.
Flow = Generator[Step, Outcome | None, T]


class ProtocolError(UcallerAPIError):
    """The answer is not a uCaller answer (not JSON, or fields of the wrong type)."""


# Only what people type around digits; anything else (letters, digits of other scripts) is
# sent as it is so the server names what is wrong with it rather than calling a guess.
_PUNCTUATION = re.compile(r"[ \t+\-()]+")


def phone_digits(phone: str | int) -> str:
    """``+7 (900) 000-00-01`` -> ``79000000001``; uCaller wants digits only (spec §5.1)."""
    found = _PUNCTUATION.sub("", str(phone).strip())
    return found or str(phone)


def auth_code(code: str | int) -> str:
    return f"{code:04d}" if isinstance(code, int) else code


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_code(raw: Any, fallback: int) -> int:
    # Fixtures and old servers send "13"; keep whatever is numeric.
    try:
        return int(raw)
    except (TypeError, ValueError):
        return fallback


def _is_error_object(body: dict[str, Any]) -> bool:
    status = body.get("status")
    if status is False:
        return True
    # No `status` at all and nothing but an error and a code: still an error object.
    return status is None and "error" in body and "code" in body and len(body) == 2


def decode(outcome: Outcome, model: type[M]) -> M:
    """The model for a successful answer, or the exception for anything else."""
    if outcome.error is not None:
        err = outcome.error
        raise ServerError(500, f"transport failure: {type(err).__name__}: {err}") from err
    resp = outcome.response
    assert resp is not None
    wait = retry_after(resp.headers.get("retry-after"))
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _http_error(resp, wait)
    if _is_error_object(body):
        code = _error_code(body.get("code"), resp.status_code)
        raise error_for(
            code,
            str(body.get("error") or ""),
            http_status=resp.status_code,
            retry_after=wait,
            body=body,
        )
    if resp.status_code >= 400 and body.get("status") is not True:
        raise _http_error(resp, wait, body)
    try:
        result = model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise ProtocolError(
            -1,
            f"unexpected {model.__name__} answer: {exc.errors()[0]['loc']}: "
            f"{exc.errors()[0]['msg']}",
            http_status=resp.status_code,
            body=body,
        ) from exc
    result._raw = body
    return result


def _http_error(
    resp: httpx.Response, wait: float | None, body: dict[str, Any] | None = None
) -> UcallerAPIError:
    status = resp.status_code
    text = f"HTTP {status} {resp.reason_phrase}".strip()
    if status >= 500:
        return ServerError(status, text, http_status=status, retry_after=wait, body=body)
    if status in (401, 429):
        return error_for(status, text, http_status=status, retry_after=wait, body=body)
    snippet = resp.text[:80].strip()
    return ProtocolError(-1, f"not a uCaller answer ({text}): {snippet!r}", http_status=status)


def normalise_base_url(url: str) -> str:
    """Accept ``https://host``, ``https://host/`` and ``https://host/v1.0`` alike."""
    url = url.strip().rstrip("/")
    if url.lower().endswith("/v1.0"):
        url = url[: -len("/v1.0")]
    return url


class Core:
    """Everything the two clients share: credentials, URLs, retries and every method."""

    def __init__(
        self,
        service_id: int | str,
        key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        auto_unique: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.retry = retry if retry is not None else RetryPolicy()
        self.auto_unique = auto_unique
        self.timeout = httpx.Timeout(timeout)
        self.clock = clock
        self.headers = {
            "Authorization": f"Bearer {key}.{service_id}",
            "Accept": "application/json",
            "User-Agent": f"opencaller-client/{__version__}",
        }

    def request(self, path: str, params: dict[str, str], *, auth: bool = True) -> httpx.Request:
        headers = self.headers if auth else {"User-Agent": self.headers["User-Agent"]}
        return httpx.Request(
            "GET",
            self.base_url + path,
            params=params,
            headers=headers,
            extensions={"timeout": self.timeout.as_dict()},
        )

    def call(
        self,
        path: str,
        params: dict[str, str],
        model: type[M],
        *,
        safe: bool,
        auth: bool = True,
    ) -> Flow[M]:
        """One API call; ``safe`` says a repeat of it cannot do anything twice."""
        attempt = 0
        while True:
            attempt += 1
            outcome = yield Send(self.request(path, params, auth=auth))
            assert outcome is not None
            try:
                return decode(outcome, model)
            except UcallerAPIError as err:
                wait = self.retry.delay(attempt, err) if safe else None
                if wait is None:
                    raise
            yield Sleep(wait)

    # -- the methods ----------------------------------------------------------------------

    def init_call(
        self,
        phone: str | int,
        *,
        code: str | int | None = None,
        client: str | None = None,
        unique: str | None = None,
        voice: bool = False,
        mix: bool = False,
    ) -> Flow[InitCall]:
        if unique is None and self.auto_unique:
            # With a key the server answers a repeat with the first call (`exists: true`)
            # instead of dialling again, which is what makes retrying initCall safe.
            unique = str(uuid.uuid4())
        params = {"phone": phone_digits(phone)}
        if code is not None:
            params["code"] = auth_code(code)
        if client is not None:
            params["client"] = client
        if unique is not None:
            params["unique"] = unique
        if voice:
            params["voice"] = "true"
        if mix:
            params["mix"] = "true"
        return self.call("/v1.0/initCall", params, InitCall, safe=unique is not None)

    def init_repeat(self, uid: int) -> Flow[InitRepeat]:
        # A repeat places another call; never sent twice.
        return self.call("/v1.0/initRepeat", {"uid": str(uid)}, InitRepeat, safe=False)

    def get_info(self, uid: int) -> Flow[GetInfo]:
        return self.call("/v1.0/getInfo", {"uid": str(uid)}, GetInfo, safe=True)

    def get_balance(self) -> Flow[GetBalance]:
        return self.call("/v1.0/getBalance", {}, GetBalance, safe=True)

    def get_service(self) -> Flow[GetService]:
        return self.call("/v1.0/getService", {}, GetService, safe=True)

    def get_account(self) -> Flow[GetAccount]:
        return self.call("/v1.0/getAccount", {}, GetAccount, safe=True)

    def check_phone(self, phone: str | int) -> Flow[CheckPhone]:
        # Sent as typed: standardising the input is what the method is for. Billed, so a
        # failed lookup is not repeated behind the caller's back.
        return self.call("/v1.0/checkPhone", {"phone": str(phone)}, CheckPhone, safe=False)

    def inbound_call_waiting(self, phone: str | int, callback_url: str) -> Flow[InboundCallWaiting]:
        params = {"phone": phone_digits(phone), "callback_url": callback_url}
        return self.call("/v1.0/inboundCallWaiting", params, InboundCallWaiting, safe=False)

    def verify_code(
        self, uid: int, code: str | int, *, unique: str | None = None
    ) -> Flow[VerifyCode]:
        if unique is None and self.auto_unique:
            # Every check spends one of the authorization's attempts; with a key the server
            # answers a repeated request with its first answer, so retrying is safe.
            unique = str(uuid.uuid4())
        params = {"uid": str(uid), "code": auth_code(code)}
        if unique is not None:
            params["unique"] = unique
        return self.call("/v1.0/verifyCode", params, VerifyCode, safe=unique is not None)

    def health(self) -> Flow[Health]:
        return self.call("/health", {}, Health, safe=True, auth=False)

    def wait(
        self,
        uid: int,
        *,
        max_wait: float,
        interval: float,
        on_update: Callable[[GetInfo], None] | None = None,
    ) -> Flow[GetInfo]:
        """Poll getInfo until ``call_status`` leaves -1 or ``max_wait`` passes; the last answer."""
        deadline = self.clock() + max_wait
        while True:
            info = yield from self.get_info(uid)
            if on_update is not None:
                on_update(info)
            left = deadline - self.clock()
            if not info.pending or left <= 0:
                return info
            yield Sleep(min(interval, left))
