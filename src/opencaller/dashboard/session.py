"""Session and device cookies.

The session cookie carries a small dict signed with itsdangerous (tamper-proof, not secret), so
any node holding the installation's secret can read it: the CSRF token, a flash message, and,
once signed in, the token of a row in ``dashboard_sessions`` (domain/web_sessions.py). Being
signed in is having that row: signing out deletes it, and a copy of the cookie is worth nothing
from then on. Cookies are HttpOnly, SameSite=Lax, and Secure when the request came over https
(directly, or as a trusted proxy says in ``X-Forwarded-Proto``).

The device cookie marks a browser that signed in to an account before; the sign-in guard
(domain/signin_guard.py) counts its attempts apart from everyone else's.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ..domain import installation
from ..runtime import Runtime

COOKIE = "oc_session"
MAX_AGE_S = 14 * 24 * 3600
DEVICE_COOKIE = "oc_device"
DEVICE_MAX_AGE_S = 180 * 24 * 3600


class Session(dict[str, Any]):
    """The decoded cookie; ``modified`` tells whether it must be sent back."""

    modified: bool = False

    def set(self, key: str, value: Any) -> None:
        self[key] = value
        self.modified = True

    def drop(self, key: str) -> Any:
        self.modified = self.modified or key in self
        return self.pop(key, None)

    def reset(self) -> None:
        """Forget everything (sign-in and sign-out start a new session: no fixation)."""
        self.clear()
        self["csrf"] = secrets.token_urlsafe(24)
        self.modified = True


class Sessions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._secret: str | None = None
        self._lock = asyncio.Lock()

    async def secret(self) -> str:
        if self._secret is None:
            async with self._lock:
                if self._secret is None:
                    self._secret = await self._load_secret()
        return self._secret

    async def _load_secret(self) -> str:
        """``settings.secret`` if set, else the one the installation stored (made on first
        use)."""
        if self.rt.settings.secret:
            return self.rt.settings.secret
        return await installation.session_secret(self.rt.db, now=self.rt.clock.now())

    async def _serializer(
        self, salt: str = "opencaller.dashboard.session"
    ) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(await self.secret(), salt=salt)

    async def load(self, request: Request) -> Session:
        session = Session()
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = (await self._serializer()).loads(raw, max_age=MAX_AGE_S)
                if isinstance(data, dict):
                    session.update(data)
            except BadSignature:
                pass
        if "csrf" not in session:
            session.reset()
        return session

    async def save(
        self, request: Request, response: Response, session: Session, *, secure: bool
    ) -> None:
        if not session.modified:
            return
        value = (await self._serializer()).dumps(dict(session))
        response.set_cookie(
            COOKIE,
            value,
            max_age=MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure,
        )

    async def device(self, request: Request, account_id: int) -> str | None:
        """The id of this browser if it signed in to ``account_id`` before, else None."""
        raw = request.cookies.get(DEVICE_COOKIE)
        if not raw:
            return None
        try:
            data = (await self._serializer(DEVICE_SALT)).loads(raw, max_age=DEVICE_MAX_AGE_S)
        except BadSignature:
            return None
        if (
            isinstance(data, dict)
            and data.get("a") == account_id
            and isinstance(data.get("d"), str)
        ):
            return str(data["d"])
        return None

    async def remember_device(
        self, request: Request, response: Response, account_id: int, *, secure: bool
    ) -> None:
        device = await self.device(request, account_id) or secrets.token_urlsafe(16)
        value = (await self._serializer(DEVICE_SALT)).dumps({"a": account_id, "d": device})
        response.set_cookie(
            DEVICE_COOKIE,
            value,
            max_age=DEVICE_MAX_AGE_S,
            path="/dashboard",
            httponly=True,
            samesite="lax",
            secure=secure,
        )


DEVICE_SALT = "opencaller.dashboard.device"
