"""Helpers for the dashboard tests: a signed-in browser-like httpx client."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from opencaller.domain.accounts import create_account
from opencaller.domain.bootstrap import ensure_tariff
from opencaller.domain.passwords import hash_password
from opencaller.runtime import Runtime

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
PASSWORD = "correct horse battery"


class Page:
    """A client that keeps its cookies and the CSRF token of the last page it saw."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **params: Any) -> httpx.Response:
        r = await self.client.get(path, params=params or None)
        found = CSRF.search(r.text)
        if found:
            self.csrf = found.group(1)
        return r

    async def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        if not self.csrf:
            await self.get("/dashboard/signin")
        body = {**data, "csrf": self.csrf} if csrf else data
        r = await self.client.post(path, data=body)
        found = CSRF.search(r.text)
        if found:
            self.csrf = found.group(1)
        return r

    async def follow(self, r: httpx.Response) -> httpx.Response:
        assert r.status_code == 303, (r.status_code, r.text[:500])
        return await self.get(r.headers["location"])

    async def sign_up(self, email: str | None = None) -> str:
        email = email or f"u{uuid.uuid4().hex[:8]}@example.com"
        await self.get("/dashboard/signup")
        r = await self.post(
            "/dashboard/signup", {"email": email, "password": PASSWORD, "password2": PASSWORD}
        )
        assert r.status_code == 303, r.text
        await self.get("/dashboard")  # the new session has a new CSRF token
        return email

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        await self.get("/dashboard/signin")
        r = await self.post("/dashboard/signin", {"email": email, "password": password})
        if r.status_code == 303:
            await self.get("/dashboard")  # the new session has a new CSRF token
        return r

    async def create_service(self, name: str = "Shop") -> int:
        r = await self.post("/dashboard/services", {"name": name, "use_direction": "checkout"})
        assert r.status_code == 303, r.text
        return int(r.headers["location"].rsplit("/", 1)[1])


def new_page(api_client: httpx.AsyncClient) -> Page:
    """A second, independent browser on the same in-process app."""
    client = httpx.AsyncClient(transport=api_client._transport, base_url=str(api_client.base_url))
    return Page(client)


async def make_admin(rt: Runtime, email: str = "root@example.com") -> str:
    now = rt.clock.now()
    tariff_id = await ensure_tariff(rt.db, now)
    async with rt.db.write() as conn:
        await create_account(
            conn,
            email=email,
            now=now,
            password_hash=hash_password(PASSWORD),
            tariff_id=tariff_id,
            is_admin=True,
        )
    return email
