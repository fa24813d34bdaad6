"""The asyncio client: runs the shared flows of ``_core`` with ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar, cast

import httpx

from ._core import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, Core, Flow, Outcome, Sleep
from .models import (
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

T = TypeVar("T")


class AsyncClient:
    """uCaller v1.0 API client (opencaller or uCaller itself).

    >>> async with AsyncClient(service_id, key, base_url="http://127.0.0.1:8080") as api:
    ...     call = await api.init_call("79000000001")
    ...     info = await api.wait(call.ucaller_id)
    """

    def __init__(
        self,
        service_id: int | str,
        key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        auto_unique: bool = True,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._core = Core(
            service_id,
            key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            auto_unique=auto_unique,
        )
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()

    async def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    outcome = Outcome(response=await self._http.send(step.request))
                except httpx.TransportError as err:
                    outcome = Outcome(error=err)
                step = flow.send(outcome)
        except StopIteration as done:
            return cast(T, done.value)

    async def init_call(
        self,
        phone: str | int,
        *,
        code: str | int | None = None,
        client: str | None = None,
        unique: str | None = None,
        voice: bool = False,
        mix: bool = False,
    ) -> InitCall:
        """Start a flash call (or a voice code with ``voice``) to ``phone``."""
        return await self._run(
            self._core.init_call(
                phone, code=code, client=client, unique=unique, voice=voice, mix=mix
            )
        )

    async def init_repeat(self, uid: int) -> InitRepeat:
        """Free repeat of an authorisation (deprecated by uCaller, served by opencaller)."""
        return await self._run(self._core.init_repeat(uid))

    async def get_info(self, uid: int) -> GetInfo:
        return await self._run(self._core.get_info(uid))

    async def get_balance(self) -> GetBalance:
        return await self._run(self._core.get_balance())

    async def get_service(self) -> GetService:
        return await self._run(self._core.get_service())

    async def get_account(self) -> GetAccount:
        return await self._run(self._core.get_account())

    async def check_phone(self, phone: str | int) -> CheckPhone:
        return await self._run(self._core.check_phone(phone))

    async def inbound_call_waiting(self, phone: str | int, callback_url: str) -> InboundCallWaiting:
        return await self._run(self._core.inbound_call_waiting(phone, callback_url))

    async def verify_code(
        self, uid: int, code: str | int, *, unique: str | None = None
    ) -> VerifyCode:
        """Check the code the subscriber typed (opencaller's extension, not on uCaller).

        Raises ``CodeError`` when it is refused (``attempts_left`` tells how many remain)."""
        return await self._run(self._core.verify_code(uid, code, unique=unique))

    async def health(self) -> Health:
        return await self._run(self._core.health())

    async def wait(
        self,
        uid: int,
        *,
        max_wait: float = 90.0,
        interval: float = 1.0,
        on_update: Callable[[GetInfo], None] | None = None,
    ) -> GetInfo:
        """Poll getInfo until the call is decided; still ``pending`` after ``max_wait`` seconds."""
        return await self._run(
            self._core.wait(uid, max_wait=max_wait, interval=interval, on_update=on_update)
        )

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
