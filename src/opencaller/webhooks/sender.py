"""One signed POST to a checked receiver: the transport both outboxes share.

The receiver's name is resolved once, refused if any address is not allowed
(webhooks/destinations.py), and the request goes to the address checked, with the original
Host header and TLS name, so DNS cannot change between check and connect. Redirects are never
followed, and proxies from the environment are ignored."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

# One implementation of the signature for both sides: customers verify with the same module.
# One implementation of the signature for both sides: customers verify with the same module.
from opencaller.webhook_signature import EVENT_HEADER, SIGNATURE_HEADER, sign

from .destinations import DestinationPolicy, ForbiddenDestination, IPAddress, Target


def new_client(timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,  # an HTTP_PROXY would connect elsewhere than the address checked
        # Requests go to a pinned IP; a pooled TLS connection to that IP was verified for
        # whichever name opened it, so never reuse one for another receiver.
        limits=httpx.Limits(max_keepalive_connections=0),
    )


class Sender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        policy: DestinationPolicy,
        timeout_s: float,
        *,
        resolve: Callable[[Target], Awaitable[IPAddress]] | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self.timeout_s = timeout_s
        self._resolve = resolve or self.resolve  # an owner may put its own in between

    async def resolve(self, target: Target) -> IPAddress:
        """The address to connect to. Raises ForbiddenDestination if the name has any address
        webhooks may not reach (rather than picking another: such a name is not a receiver)."""
        if target.address is not None:
            self.policy.check_address(target.address)
            return target.address
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            ),
            self.timeout_s,
        )
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise OSError(f"{target.host} has no address")
        for ip in addresses:
            try:
                self.policy.check_address(ip)
            except ForbiddenDestination as exc:
                raise ForbiddenDestination(f"{target.host} resolves to {exc}") from None
        return addresses[0]

    async def post(self, url: str, event: str, body: bytes, secret: str) -> httpx.Response:
        """POST ``body`` signed with ``secret``, name lookup included, within ``timeout_s``
        (so a delivery's lease, longer than that, never ends while it runs). Raises
        ForbiddenDestination, httpx.HTTPError, OSError or TimeoutError."""
        async with asyncio.timeout(self.timeout_s):
            return await self._post(url, event, body, secret)

    async def _post(self, url: str, event: str, body: bytes, secret: str) -> httpx.Response:
        target = self.policy.check_url(url)
        ip = await self._resolve(target)
        request = self.client.build_request(
            "POST",
            target.url,  # Host header (and Basic auth from userinfo) for the name given
            content=body,
            headers={
                "Content-Type": "application/json",
                EVENT_HEADER: event,
                SIGNATURE_HEADER: sign(secret, body),
                "User-Agent": "opencaller-webhooks",
            },
            timeout=self.timeout_s,
        )
        request.url = target.url.copy_with(host=str(ip))  # connect to the address checked
        if target.url.scheme == "https" and target.address is None:
            request.extensions["sni_hostname"] = target.host  # and verify TLS for the name
        return await self.client.send(request, follow_redirects=False)


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: int | None  # the receiver's HTTP status, if it answered
    error: str | None
    refused: bool = False  # the URL will not become acceptable by waiting


async def attempt(sender: Sender, url: str, event: str, body: bytes, secret: str) -> Attempt:
    """One delivery attempt, its result as a value (never raises for the receiver's faults)."""
    try:
        resp = await sender.post(url, event, body, secret)
    except ForbiddenDestination as exc:
        return Attempt(False, None, f"refused: {exc}"[:500], refused=True)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])
    status = resp.status_code
    if resp.is_redirect:
        return Attempt(False, status, f"HTTP {status} (redirects are not followed)")
    if not 200 <= status < 300:
        return Attempt(False, status, f"HTTP {status}")
    return Attempt(True, status, None)


def settle(
    result: Attempt, attempts: int, max_attempts: int, retry_in: float, now: float
) -> dict[str, object]:
    """The outbox row's new delivery columns after attempt number ``attempts``: delivered,
    failed for good, or due again in ``retry_in`` seconds (the lease is released)."""
    values: dict[str, object] = {
        "attempts": attempts,
        "last_status": result.status,
        "last_error": result.error,
        "lease_owner": None,
        "lease_until": None,
    }
    if result.ok:
        values.update(state="delivered", delivered_at=now)
    elif result.refused or attempts >= max_attempts:
        values.update(state="failed")
    else:
        values.update(next_attempt_at=now + retry_in)
    return values
