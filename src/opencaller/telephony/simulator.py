"""The built-in call simulator: the default provider, and the only one for test numbers.

It behaves like the phone network as the dispatcher sees it: a call takes time, ends with an
outcome, and comes from a caller number that ends in the code. ``79000000001`` is always
reached and ``79000000002`` never is (the documented test numbers).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import orjson

from ..config import SimulatorSettings
from .base import CallEvent, CallReport, CallRequest, EventSink, InboundHandler, Outcome

ALWAYS_REACHED = "79000000001"
NEVER_REACHED = "79000000002"
CALLER_PREFIX = "7999000"  # simulated caller IDs: 7999000 + the four digits of the code
DEADLINE_MARGIN_S = 5.0  # on top of the simulated delay: a simulated call never hangs


class Simulator:
    name = "simulator"

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings or SimulatorSettings()
        self._inbound: list[InboundHandler] = []
        self.calls_started = 0
        self._conversion = random.Random(self.settings.conversion_seed)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def check(self, request: CallRequest) -> str | None:
        return None

    async def healthy(self) -> bool:
        return True

    def deadline_s(self, request: CallRequest) -> float:
        return self._outcome(request.destination)[1] + DEADLINE_MARGIN_S

    def confirmation_number(self, caller: str) -> str | None:
        return self.settings.inbound_number

    def converts(self, destination: str, channel: str) -> bool:
        """Whether the subscriber at ``destination`` enters the code of a ``channel`` call
        (settings ``conversion``: probability per number prefix and channel). The network
        cannot type codes: tests and bench/fraud.py ask this, then call verifyCode or not."""
        rates = self.settings.conversion
        prefix = max((p for p in rates if destination.startswith(p)), key=len, default=None)
        rate = self.settings.conversion_default
        if prefix is not None:
            rate = rates[prefix].get(channel, rate)
        return self._conversion.random() < rate

    def on_inbound(self, handler: InboundHandler) -> None:
        self._inbound.append(handler)

    def _outcome(self, destination: str) -> tuple[Outcome, float]:
        if destination == ALWAYS_REACHED:
            return Outcome.DELIVERED, 0.0
        if destination == NEVER_REACHED:
            return Outcome.UNAVAILABLE, 0.0
        outcome = self.settings.outcomes.get(destination, self.settings.default_outcome)
        return Outcome(outcome), self.settings.delay_s

    def _record(self, request: CallRequest, caller_id: str, started: float) -> None:
        path = self.settings.log_path
        if not path:
            return
        line = orjson.dumps(
            {
                "ucaller_id": request.ucaller_id,
                "destination": request.destination,
                "caller_id": caller_id,
                "kind": request.kind.value,
                "at": started,
                "pid": os.getpid(),
            }
        )
        # One append per call, written before the call "starts": the record of what "the
        # network" saw is in the kernel at once, so it survives a kill of this process a moment
        # later (no fsync: that guards against losing the machine, not the process).
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line + b"\n")
        finally:
            os.close(fd)

    async def place_call(self, request: CallRequest, events: EventSink | None = None) -> CallReport:
        started = time.time()
        caller_id = CALLER_PREFIX + request.code
        self.calls_started += 1
        if self.settings.log_path:
            self._record(request, caller_id, started)  # a few microseconds: no thread needed
        outcome, delay = self._outcome(request.destination)
        if delay > 0:
            await asyncio.sleep(delay)
        sip_code = {
            Outcome.DELIVERED: 180,
            Outcome.ANSWERED: 200,
            Outcome.BUSY: 486,
            Outcome.NOT_FOUND: 404,
            Outcome.UNAVAILABLE: 480,
            Outcome.REJECTED: 603,
            Outcome.NETWORK_ERROR: 503,
        }.get(outcome)
        if events is not None and outcome.reached:
            await events(CallEvent(request.ucaller_id, "ringing", 180, time.time()))
        return CallReport(
            outcome=outcome,
            caller_id=caller_id,
            sip_code=sip_code,
            reason=f"simulated {outcome.value}",
            started_at=started,
            progress_at=time.time() if outcome.reached else None,
            ended_at=time.time(),
            kinds_tried=(request.kind,),
        )
