"""The provider interface: what the dispatcher asks of anything that places calls.

A provider knows nothing about HTTP, accounts or storage. It is handed one call to place and
answers with a :class:`CallReport`. The built-in simulator and the SIP trunk both implement it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

# After its call is cancelled (deadline, shutdown), a provider gets this long to end the call
# on the wire (CANCEL, or ACK + BYE) before the cancellation goes on.
CUT_GRACE_S: Final = 2.0


class CallKind(StrEnum):
    FLASH = "flash"  # ring from a number ending in the code, hang up on ringing
    VOICE = "voice"  # answer expected; the code is spoken
    MIX = "mix"  # flash first, voice if the flash call did not reach the subscriber


class Outcome(StrEnum):
    DELIVERED = "delivered"  # 180/183 seen: the handset was alerted (flash success)
    ANSWERED = "answered"  # 200 OK (voice success)
    BUSY = "busy"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    NETWORK_ERROR = "network_error"
    NO_PROGRESS = "no_progress"  # nothing from the far end before the progress timeout
    NO_ANSWER = "no_answer"  # voice: rang but was never answered
    INTERRUPTED = "interrupted"  # our process died mid-call; never retried (see docs)

    @property
    def reached(self) -> bool:
        """Whether the subscriber's phone was reached: `call_status` 1 on the wire."""
        return self in (Outcome.DELIVERED, Outcome.ANSWERED)


class ProviderError(Exception):
    """A call cannot be placed at all (configuration, no route, code not coverable)."""


@dataclass(frozen=True, slots=True)
class CallRequest:
    ucaller_id: int
    destination: str  # E.164 digits, no '+'
    code: str  # four digits
    kind: CallKind = CallKind.FLASH
    language: str = "ru"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Progress of a call as it happens (ringing, answered); the final word is the report."""

    ucaller_id: int
    state: str  # "trying" | "ringing" | "answered"
    sip_code: int | None = None
    at: float = 0.0
    kind: CallKind | None = None  # which call of a mix rang or answered


@dataclass(frozen=True, slots=True)
class CallReport:
    outcome: Outcome
    caller_id: str | None = None  # the number we called from (flash: ends in the code)
    sip_code: int | None = None
    reason: str = ""
    q850_cause: int | None = None
    started_at: float = 0.0
    progress_at: float | None = None
    ended_at: float | None = None
    kinds_tried: tuple[CallKind, ...] = field(default_factory=tuple)


EventSink = Callable[[CallEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class InboundCall:
    """A subscriber called one of our confirmation numbers."""

    caller: str  # E.164 digits of who called (from P-Asserted-Identity, else From)
    called: str  # the confirmation number they dialled
    at: float
    call_id: str = ""


InboundHandler = Callable[[InboundCall], Awaitable[None]]


@runtime_checkable
class Provider(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def check(self, request: CallRequest) -> str | None:
        """Why this call cannot be placed (e.g. the caller-ID pool cannot end in this code),
        or None. Called at initCall time so the customer gets a clear error at once."""
        ...

    async def place_call(
        self, request: CallRequest, events: EventSink | None = None
    ) -> CallReport: ...

    async def healthy(self) -> bool: ...

    def deadline_s(self, request: CallRequest) -> float:
        """The longest ``place_call(request)`` may take, all its own timeouts included (and
        failover across trunks). Past it the dispatcher cancels the call, and the provider
        ends it on the wire within ``CUT_GRACE_S``."""
        ...

    def confirmation_number(self, caller: str) -> str | None:
        """A number of ours the subscriber should call for inbound verification, or None when
        this provider takes no inbound calls."""
        ...

    def on_inbound(self, handler: InboundHandler) -> None: ...


def deadline_report(kind: CallKind, last: CallEvent | None, deadline_s: float) -> CallReport:
    """The outcome of a call cut at its deadline, from the last progress it reported.

    The same rules as a call that ends by itself: an alerted phone is a delivered flash call,
    an answer is answered; a voice call that only rang was not answered; nothing heard at all
    is the trunk's failure (not reached, so refunded).
    """
    why = f"no result within the call deadline ({deadline_s:.0f} s); ended by us"
    state = last.state if last is not None else None
    code = last.sip_code if last is not None else None
    rang_kind = (last.kind if last is not None else None) or kind
    if state == "answered":
        outcome = Outcome.ANSWERED
    elif state == "ringing":
        outcome = Outcome.NO_ANSWER if rang_kind == CallKind.VOICE else Outcome.DELIVERED
    elif state == "trying":
        outcome, code = Outcome.NO_PROGRESS, None
    else:
        outcome = Outcome.NETWORK_ERROR
    at = last.at if last is not None and state in ("ringing", "answered") else None
    return CallReport(outcome=outcome, sip_code=code, reason=why, progress_at=at)
