"""Password guessing: every sign-in attempt is counted *before* the password is checked.

The count is one atomic upsert per key in the database, so simultaneous attempts on several
nodes cannot slip past a limit: with a limit of 5, at most 5 passwords are ever compared per
window, however many arrive at once.

Who is counted, and why (docs/dashboard.md, "Sign-in protection"):
- a browser that signed in to this account before (it carries a signed device cookie) has its
  own counter, ``device:<id>``; lockouts that others cause never reach it, so an attacker
  cannot lock the owner out of the browser they use every day;
- any other browser is counted per IP and e-mail pair (``pair:``, the 5-try limit), per IP
  (``ip:``, many accounts tried from one address) and per e-mail (``email:``, one account tried
  from many addresses);
- password checks on signed-in forms (change password, turn off 2FA) and one-time codes are
  counted per account.
A success clears the counter that identifies the user (pair, device, account) and gives back the
attempt it took from the shared ones (IP, e-mail), so colleagues behind one NAT who sign in
correctly never add up to a block.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..storage.dashboard_tables import signin_attempts as sa_
from ..storage.database import Database

WINDOW_S = 900.0


@dataclass(frozen=True, slots=True)
class Limits:
    pair: int = 5  # one e-mail from one IP
    device: int = 5  # one e-mail from a browser that signed in to it before
    ip: int = 20  # any e-mails from one IP
    email: int = 10  # one e-mail from browsers it has never signed in from
    account: int = 5  # password or one-time code checks of a signed-in account
    window_s: float = WINDOW_S


class SigninGuard:
    def __init__(self, db: Database, limits: Limits | None = None) -> None:
        self.db = db
        self.limits = limits or Limits()

    def _keys(self, ip: str, email: str, device: str | None) -> list[tuple[str, int]]:
        lim = self.limits
        if device:
            return [(f"device:{device}", lim.device)]
        return [
            (f"pair:{ip}|{email}", lim.pair),
            (f"ip:{ip}", lim.ip),
            (f"email:{email}", lim.email),
        ]

    async def sign_in(self, *, ip: str, email: str, device: str | None, now: float) -> int | None:
        """Count one sign-in attempt; seconds to wait when it must not be checked."""
        return await self._count(self._keys(ip, email, device), now)

    async def sign_up(self, *, ip: str, now: float) -> int | None:
        """Count one sign-up from ``ip`` (it tells whether an e-mail has an account)."""
        return await self._count([(f"signup:{ip}", self.limits.ip)], now)

    async def signed_in(self, *, ip: str, email: str, device: str | None) -> None:
        keys = [k for k, _ in self._keys(ip, email, device)]
        await self._settle(reset=keys[:1], give_back=keys[1:])

    async def account_check(self, account_id: int, what: str, now: float) -> int | None:
        """Count one password or code check of a signed-in account (``what`` names the form)."""
        return await self._count([(f"{what}:{account_id}", self.limits.account)], now)

    async def account_ok(self, account_id: int, what: str) -> None:
        await self._settle(reset=[f"{what}:{account_id}"], give_back=[])

    async def _count(self, keys: list[tuple[str, int]], now: float) -> int | None:
        window = self.limits.window_s
        wait: int | None = None
        async with self.db.write() as conn:
            for key, limit in keys:
                count, start = await _increment(conn, key[:400], now, window)
                if count > limit:
                    left = max(1, math.ceil(start + window - now))
                    wait = max(wait or 0, left)
            if random.random() < 0.01:  # forget old windows now and then
                await conn.execute(delete(sa_).where(sa_.c.window_start < now - window))
        return wait

    async def _settle(self, *, reset: list[str], give_back: list[str]) -> None:
        async with self.db.write() as conn:
            if reset:
                await conn.execute(delete(sa_).where(sa_.c.key.in_([k[:400] for k in reset])))
            for key in give_back:
                await conn.execute(
                    update(sa_)
                    .where(sa_.c.key == key[:400], sa_.c.count > 0)
                    .values(count=sa_.c.count - 1)
                )


async def _increment(
    conn: AsyncConnection, key: str, now: float, window: float
) -> tuple[int, float]:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    expired = sa_.c.window_start <= now - window
    stmt = (
        insert(sa_)
        .values(key=key, window_start=now, count=1)
        .on_conflict_do_update(
            index_elements=[sa_.c.key],
            set_={
                "count": case((expired, 1), else_=sa_.c.count + 1),
                "window_start": case((expired, now), else_=sa_.c.window_start),
            },
        )
        .returning(sa_.c.count, sa_.c.window_start)
    )
    count, start = (await conn.execute(stmt)).one()
    return int(count), float(start)
