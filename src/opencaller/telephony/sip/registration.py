"""REGISTER for trunks that authenticate by registration (RFC 3261 §10).

One ``Registration`` per such trunk: register at start, refresh at 50-80 % of the Expires
the registrar granted (spread, so many trunks do not refresh together), answer 401/407
digest challenges, retry after a failure with doubling backoff, and unregister
(``Expires: 0``) on shutdown. Its ``state`` says whether the trunk may place calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sipmessage import Response

from opencaller.telephony.sip import messages as m
from opencaller.telephony.sip.auth import authorization, parse_challenge
from opencaller.telephony.sip.config import TrunkConfig
from opencaller.telephony.sip.transaction import ClientTransaction
from opencaller.telephony.sip.transport import Addr, Transport, via_transport

log = logging.getLogger("opencaller.sip.register")

_EXPIRES = re.compile(r";\s*expires\s*=\s*(\d+)", re.IGNORECASE)
REFRESH_AT = (0.5, 0.8)  # refresh between these fractions of the granted Expires
UNREGISTER_WAIT_S = 2.0  # at shutdown, wait this long at most for the registrar


@dataclass(slots=True)
class RegState:
    registered: bool = False
    last_code: int | None = None
    reason: str = "not registered yet"
    since: float = field(default_factory=time.time)
    expires_s: int | None = None  # granted by the registrar


@dataclass(frozen=True, slots=True)
class Local:
    """Our side, as the registrar should see it (public address when behind NAT)."""

    ip: str
    port: int
    t1: float
    t2: float
    user_agent: str
    # No public address configured: take the one the registrar saw (Via received/rport)
    # into our Contact, so calls to us cross the NAT.
    learn: bool = False


def granted_expires(resp: Response, contact_hostport: str, asked: int) -> int:
    """The Expires the registrar granted our binding: the ``expires`` parameter of our
    Contact in the 200, else its Expires header, else what we asked for."""
    for value in resp.headers.getlist("Contact"):
        if contact_hostport in value:
            found = _EXPIRES.search(value[value.rfind(">") + 1 :] if ">" in value else value)
            if found:
                return int(found.group(1))
    header = (resp.headers.get("Expires") or "").strip()
    return int(header) if header.isdigit() else asked


class Registration:
    def __init__(
        self,
        transport: Transport,
        trunk: TrunkConfig,
        registrar: Addr,
        local: Local,
        *,
        on_change: Callable[[str, RegState], None] | None = None,
    ) -> None:
        self.transport, self.trunk, self.dest, self.local = transport, trunk, registrar, local
        self.on_change = on_change
        self.state = RegState()
        user = trunk.username or "opencaller"
        self.aor = f"sip:{user}@{trunk.domain}"
        self.ruri = f"sip:{trunk.domain}"
        self.user = user
        self.contact_hostport = f"{local.ip}:{local.port}"
        self.contact = f"<sip:{user}@{self.contact_hostport}>"
        self.call_id = m.new_call_id(local.ip)  # one Call-ID per boot (§10.2.4)
        self.from_tag = m.new_tag()
        self.cseq = 0
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self.attempted = asyncio.Event()  # the first REGISTER has its answer (or none)

    # --- what calls ask -------------------------------------------------------------------

    def why_not(self) -> str | None:
        """None when the trunk may place calls; otherwise why not, for the call's reason."""
        s = self.state
        if s.registered:
            return None
        return f"not registered ({s.reason})"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"sip-register-{self.trunk.name}"
        )

    async def close(self) -> None:
        """Stop refreshing and unregister (best effort, bounded)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.state.registered:
            try:
                await asyncio.wait_for(self.register(0), UNREGISTER_WAIT_S)
            except TimeoutError:
                log.warning("trunk %s: no answer to our unregister", self.trunk.name)
            self._set(False, self.state.last_code, "unregistered")

    async def _run(self) -> None:
        t = self.trunk
        while True:
            try:
                ok = await self.register(t.register_expires_s)
            except Exception:  # a bug must not end registration for good: log, retry
                log.exception("trunk %s: registering failed", t.name)
                ok = False
            self.attempted.set()
            if ok:
                self._failures = 0
                granted = self.state.expires_s or t.register_expires_s
                await asyncio.sleep(granted * random.uniform(*REFRESH_AT))
                continue
            self._failures += 1
            backoff = min(
                t.register_retry_max_s, t.register_retry_min_s * 2 ** (self._failures - 1)
            )
            await asyncio.sleep(backoff * random.uniform(0.9, 1.1))

    # --- one REGISTER transaction (with its digest round) ---------------------------------

    def _request(self, expires: int, auth: list[tuple[str, str]]) -> tuple[ClientTransaction, str]:
        self.cseq += 1
        branch = m.new_branch()
        req = m.request(
            "REGISTER",
            self.ruri,
            via=f"SIP/2.0/{via_transport(self.dest)} {self.contact_hostport};branch={branch};rport",
            from_=f"<{self.aor}>;tag={self.from_tag}",
            to=f"<{self.aor}>",
            call_id=self.call_id,
            cseq=self.cseq,
            headers=[("Contact", self.contact), ("Expires", str(expires)), *auth],
            user_agent=self.local.user_agent,
        )
        tx = ClientTransaction(
            self.transport, req, branch, self.dest, t1=self.local.t1, t2=self.local.t2
        )
        tx.start()
        return tx, branch

    async def register(self, expires: int) -> bool:
        """One REGISTER (``expires = 0``: remove our binding). True when the registrar took it."""
        auth: list[tuple[str, str]] = []
        challenged = relearned = False
        while True:
            tx, _ = self._request(expires, auth)
            resp = await final_response(tx)
            if resp is None:
                self._set(False, None, "no answer from the registrar")
                return False
            if resp.code in (401, 407):
                creds = None if challenged else self._credentials(resp)
                if creds is not None:
                    auth, challenged = creds, True
                    continue
            if 200 <= resp.code < 300:
                if expires and not relearned and self._learned(resp):
                    relearned = True
                    continue  # register the address the registrar saw instead
                if expires:
                    granted = granted_expires(resp, self.contact_hostport, expires)
                    self.state.expires_s = granted
                    self._set(True, resp.code, f"registered for {granted} s")
                return True
            self._set(False, resp.code, f"{resp.code} {resp.phrase}")
            return False

    def _learned(self, resp: Response) -> bool:
        """Take the address the registrar saw us at (received/rport) into our Contact when
        it differs (we are behind NAT). True when the Contact changed."""
        if not self.local.learn:
            return False
        host, port = m.via_received(resp)
        seen = f"{host or self.local.ip}:{port or self.local.port}"
        if (host is None and port is None) or seen == self.contact_hostport:
            return False
        log.info("trunk %s: the registrar sees us at %s", self.trunk.name, seen)
        self.contact_hostport = seen
        self.contact = f"<sip:{self.user}@{seen}>"
        return True

    def _credentials(self, resp: Response) -> list[tuple[str, str]] | None:
        t = self.trunk
        if t.password is None or not (t.auth_username or t.username):
            return None
        name = "WWW-Authenticate" if resp.code == 401 else "Proxy-Authenticate"
        for value in resp.headers.getlist(name):
            ch = parse_challenge(value)
            if ch is None or (t.realm is not None and ch.realm != t.realm):
                continue
            try:
                cred = authorization(
                    ch,
                    method="REGISTER",
                    uri=self.ruri,
                    username=t.auth_username or t.username or "",
                    password=t.password,
                )
            except ValueError:
                continue
            return [("Authorization" if resp.code == 401 else "Proxy-Authorization", cred)]
        return None

    def _set(self, registered: bool, code: int | None, reason: str) -> None:
        s = self.state
        changed = s.registered != registered
        if changed or s.last_code != code:
            s.since = time.time() if changed else s.since
        s.registered, s.last_code, s.reason = registered, code, reason
        if changed:
            level = logging.INFO if registered else logging.WARNING
            log.log(level, "trunk %s: %s", self.trunk.name, self.why_not() or reason)
        if self.on_change is not None:
            self.on_change(self.trunk.name, s)


async def final_response(tx: ClientTransaction) -> Response | None:
    """The transaction's final response; None when Timer F ran out (no answer)."""
    while True:
        resp = await tx.response(None)
        if resp is None or resp.code >= 200:
            return resp
