"""Signed session cookies.

The cookie carries a small dict signed with itsdangerous (tamper-proof, not secret), so any node
holding the installation's secret can read it. It is HttpOnly, SameSite=Lax, and Secure when
the request came over https. A fingerprint of the password hash is kept in it, so changing the
password signs every other browser out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from ..runtime import Runtime
from ..storage.dashboard_tables import dashboard_kv

COOKIE = "oc_session"
MAX_AGE_S = 14 * 24 * 3600
SECRET_KEY = "session_secret"


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


async def load_secret(rt: Runtime) -> str:
    """``settings.secret`` if set, else the one stored in the database (made on first use)."""
    if rt.settings.secret:
        return rt.settings.secret
    query = select(dashboard_kv.c.value).where(dashboard_kv.c.key == SECRET_KEY)
    async with rt.db.read() as conn:
        found = (await conn.execute(query)).scalar()
    if found:
        return str(found)
    try:
        async with rt.db.write() as conn:
            found = (await conn.execute(query)).scalar()
            if found:
                return str(found)
            value = secrets.token_urlsafe(48)
            await conn.execute(
                insert(dashboard_kv).values(key=SECRET_KEY, value=value, created_at=rt.clock.now())
            )
            return value
    except IntegrityError:  # another node stored one first: use theirs
        async with rt.db.read() as conn:
            return str((await conn.execute(query)).scalar_one())


class Sessions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._secret: str | None = None
        self._lock = asyncio.Lock()

    async def secret(self) -> str:
        if self._secret is None:
            async with self._lock:
                if self._secret is None:
                    self._secret = await load_secret(self.rt)
        return self._secret

    async def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(await self.secret(), salt="opencaller.dashboard.session")

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

    async def save(self, request: Request, response: Response, session: Session) -> None:
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
            secure=request.url.scheme == "https",
        )

    async def password_mark(self, password_hash: str) -> str:
        """A short keyed fingerprint of the password hash (the hash itself never leaves)."""
        key = (await self.secret()).encode()
        return hmac.new(key, password_hash.encode(), hashlib.sha256).hexdigest()[:20]
