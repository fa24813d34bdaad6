"""Callback URLs may not point into our own network (SSRF), through the public API.

Refused when given (inboundCallWaiting answers error 2 and stores nothing) and again when
delivered (names are resolved then; the receiver that a forbidden name leads to never sees a
request). Operators open networks with ``webhook_allowed_networks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opencaller.client.webhooks import verify
from opencaller.config import Settings
from opencaller.domain.clock import Clock, FakeClock
from opencaller.storage.tables import authorizations
from opencaller.storage.webhook_tables import webhook_outbox
from opencaller.telephony.base import InboundCall
from opencaller.webhooks.deliverer import WebhookDeliverer
from opencaller.webhooks.destinations import DestinationPolicy, IPAddress, Target

from ..support import Api, make_api

PHONE = "79161234567"

# Every spelling of "this machine or its neighbours" we know of; each must be refused.
FORBIDDEN = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://0x7f.1/hook",
    "http://0177.0.0.1/hook",
    "http://0/hook",
    "http://0.0.0.0/hook",
    "http://0.1.2.3/hook",
    "http://[::1]/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[::127.0.0.1]/hook",  # IPv4-compatible (deprecated)
    "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64
    "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 of 169.254.169.254
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://foo.localhost/hook",
    "http://user:pass@127.0.0.1/hook",
    "http://example.com@127.0.0.1/hook",
    "http://127.0.0.1:22/",
    "http://127.0.0.1./hook",
    "http://127\u30020\u30020\u30021/hook",  # ideographic full stops
    "http://127\uff0e0\uff0e0\uff0e1/hook",  # fullwidth full stops
    "http://%31%32%37.0.0.1/hook",
    "http://127.0.0.1%2f.example.com/hook",
    "http://127.0.0.1\\@example.com/hook",
    "http://1.2.3.4.5/hook",
    "http://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://224.0.0.1/hook",  # multicast
    "http://240.0.0.1/hook",  # reserved
    "http://255.255.255.255/hook",  # broadcast
    "http://192.0.0.8/hook",
    "http://192.0.2.1/hook",  # documentation
    "http://198.51.100.7/hook",
    "http://203.0.113.9/hook",
    "http://198.18.0.1/hook",  # benchmarking
    "http://[fc00::1]/hook",  # unique local
    "http://[fd12:3456::1]/hook",
    "http://[fe80::1]/hook",  # link local
    "http://[fe80::1%25eth0]/hook",
    "http://[fec0::1]/hook",  # site local
    "http://[ff02::1]/hook",  # multicast
    "http://[2001:db8::1]/hook",  # documentation
    "http://[100::1]/hook",  # discard-only
    "http://[2001::1]/hook",  # Teredo
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://example.com/",
    "javascript:alert(1)",
    "http:/example.com/hook",
    "http:example.com/hook",
    "http:///hook",
    "http://example.com:0/hook",
    "http://exa mple.com/hook",
    "https://example.com/" + "a" * 2048,
]

ACCEPTED = [
    "https://example.com/hook",
    "HTTPS://Hooks.Example.COM./a?b=1",
    "https://user:pw@hooks.example.com:8443/cb",
    "http://8.8.8.8/hook",
    "http://134744072/hook",  # 8.8.8.8 spelled as a number: public, so allowed
    "http://[2606:4700:4700::1111]/hook",
    "http://[64:ff9b::808:808]/hook",  # NAT64 of a public address
    "http://xn--80ak6aa92e.com/hook",
]


async def _stored(api: Api) -> tuple[int, int]:
    async with api.rt.db.read() as conn:
        auths = (await conn.execute(select(func.count()).select_from(authorizations))).scalar()
        hooks = (await conn.execute(select(func.count()).select_from(webhook_outbox))).scalar()
    return int(auths or 0), int(hooks or 0)


async def test_forbidden_callback_urls_are_refused_with_error_2(api: Api, clock: FakeClock) -> None:
    wrong: list[str] = []
    for url in FORBIDDEN:
        clock.advance(1.1)  # stay under the per-second limit
        body = await api.get("inboundCallWaiting", phone=PHONE, callback_url=url)
        if not (
            body.get("status") is False
            and body.get("code") == 2
            and "callback_url" in str(body.get("error"))
        ):
            wrong.append(f"{url!r}: {body}")
    assert wrong == []
    assert await _stored(api) == (0, 0)  # nothing written for any of them


async def test_refusal_says_why(api: Api) -> None:
    body = await api.get(
        "inboundCallWaiting", phone=PHONE, callback_url="http://169.254.169.254/latest/"
    )
    assert body == {
        "status": False,
        "error": "Parameter 'callback_url' is refused: 169.254.169.254 is a link-local address",
        "code": 2,
    }
    body = await api.get("inboundCallWaiting", phone=PHONE, callback_url="http://0x7f000001/")
    assert body["error"] == "Parameter 'callback_url' is refused: 127.0.0.1 is a loopback address"


async def test_public_callback_urls_are_accepted(api: Api, clock: FakeClock) -> None:
    for i, url in enumerate(ACCEPTED):
        clock.advance(16)  # one number waits 15 s between authorizations
        body = await api.get("inboundCallWaiting", phone=f"7916123450{i}", callback_url=url)
        assert body["status"] is True, (url, body)
    assert await _stored(api) == (len(ACCEPTED), 0)


# -- delivery ------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A real HTTP server on a loopback address that records what reaches it."""

    host: str
    status: int = 204
    location: str | None = None
    tls: ssl.SSLContext | None = None
    sni: list[str | None] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@contextlib.contextmanager
def receiver(host: str = "127.0.0.1", **kw: Any) -> Iterator[Receiver]:
    rec = Receiver(host, **kw)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(rec.status)
            if rec.location:
                self.send_header("Location", rec.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, rec.port), Handler)
    rec.port = server.server_address[1]
    if rec.tls is not None:
        rec.tls.sni_callback = lambda _sock, name, _ctx: rec.sni.append(name)
        server.socket = rec.tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def api_with(
    settings: Settings, *, dispatch: bool = True, **update: Any
) -> AsyncIterator[Api]:
    # Real time: the outbox is due by the wall clock the deliverer reads.
    async with make_api(settings.model_copy(update=update), Clock(), dispatch=dispatch) as api:
        yield api


async def _inbound(api: Api, callback_url: str) -> dict[str, Any]:
    """The customer waits for a call, then the subscriber calls our number."""
    waiting = await api.get("inboundCallWaiting", phone=PHONE, callback_url=callback_url)
    assert waiting["status"] is True, waiting
    call = InboundCall(caller=PHONE, called=waiting["confirmation_number"], at=time.time())
    assert await api.rt.inbound.on_call(call) == waiting["ucaller_id"]
    return waiting


async def _settled(api: Api, within_s: float = 30.0) -> Any:
    """The outbox row once the deliverer has tried it at least once."""
    deadline = time.monotonic() + within_s
    while True:
        async with api.rt.db.read() as conn:
            row = (await conn.execute(select(webhook_outbox))).one()
        if row.attempts > 0 or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.05)


async def test_allowed_loopback_receiver_gets_the_signed_webhook(settings: Settings) -> None:
    with receiver() as rec:
        async with api_with(settings, webhook_allowed_networks=["127.0.0.0/8"]) as api:
            hook = f"http://{rec.netloc}/hook"
            waiting = await _inbound(api, hook)
            row = await _settled(api)
            key = api.key
    assert (row.state, row.attempts, row.last_status) == ("delivered", 1, 204)
    assert len(rec.got) == 1
    headers, body = rec.got[0]
    assert headers["host"] == rec.netloc
    assert json.loads(body)["callId"] == str(waiting["ucaller_id"])
    assert json.loads(body)["callbackLink"] == hook
    verify(key, body, headers["x-opencaller-signature"])  # raises if it does not match


def _name_for_loopback() -> tuple[str, str] | None:
    """A host name (not localhost, which is refused when given) that this machine resolves
    to loopback only: Debian's ip6-localhost, or often the machine's own name."""
    for name in ("ip6-localhost", "ip6-loopback", socket.gethostname()):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        addresses = {ipaddress.ip_address(i[4][0]) for i in infos}
        if addresses and all(a.is_loopback for a in addresses) and name != "localhost":
            return name, str(sorted(addresses, key=str)[0])
    return None


LOOPBACK_NAME = _name_for_loopback()


@pytest.mark.skipif(LOOPBACK_NAME is None, reason="no host name here resolves to loopback")
async def test_name_resolving_to_loopback_is_refused_at_delivery(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    assert LOOPBACK_NAME is not None
    name, address = LOOPBACK_NAME
    caplog.set_level(logging.WARNING, logger="opencaller.webhooks")
    with receiver(address) as rec:
        async with api_with(settings) as api:
            # Given, the name looks like any other: only DNS tells where it leads.
            await _inbound(api, f"http://{name}:{rec.port}/hook")
            row = await _settled(api)
            await asyncio.sleep(0.5)  # would a retry come?
            async with api.rt.db.read() as conn:
                again = (await conn.execute(select(webhook_outbox))).one()
    assert rec.got == []  # never connected to
    assert (row.state, row.attempts, row.last_status) == ("failed", 1, None)
    assert row.last_error == f"refused: {name} resolves to {address} is a loopback address"
    assert (again.state, again.attempts) == ("failed", 1)  # permanent: no retries
    assert f"{name}:{rec.port}/hook refused: {name} resolves to {address}" in caplog.text


@pytest.mark.skipif(LOOPBACK_NAME is None, reason="no host name here resolves to loopback")
async def test_allowed_name_is_delivered_with_its_own_host_header(settings: Settings) -> None:
    assert LOOPBACK_NAME is not None
    name, address = LOOPBACK_NAME
    with receiver(address) as rec:
        allowed = [f"{address}/128"] if ":" in address else ["127.0.0.0/8"]
        async with api_with(settings, webhook_allowed_networks=allowed) as api:
            await _inbound(api, f"http://{name}:{rec.port}/hook")
            row = await _settled(api)
    assert (row.state, row.last_status) == ("delivered", 204)
    assert [h["host"] for h, _ in rec.got] == [f"{name}:{rec.port}"]


async def test_redirect_to_a_forbidden_address_is_not_followed(settings: Settings) -> None:
    with receiver("127.0.0.2") as inside, receiver(status=302) as allowed:
        allowed.location = f"http://{inside.netloc}/steal"
        # Only 127.0.0.1 is allowed; 127.0.0.2 is as forbidden as any other loopback address.
        async with api_with(settings, webhook_allowed_networks=["127.0.0.1/32"]) as api:
            await _inbound(api, f"http://{allowed.netloc}/hook")
            row = await _settled(api)
    assert len(allowed.got) == 1
    assert inside.got == []
    assert row.state == "pending"  # a receiver that redirects is retried like any failure
    assert (row.attempts, row.last_status) == (1, 302)
    assert row.last_error == "HTTP 302 (redirects are not followed)"


async def test_delivery_checks_the_url_against_current_settings(settings: Settings) -> None:
    """A row keeps its URL; the process delivering it judges it by its own settings."""
    with receiver() as rec:
        # Accepted by an API node whose operator allowed loopback (it delivers nothing) ...
        async with api_with(
            settings, dispatch=False, webhook_allowed_networks=["127.0.0.0/8"]
        ) as api:
            await _inbound(api, f"http://{rec.netloc}/hook")
        # ... and delivered by a worker that does not allow it.
        async with api_with(settings) as api:
            row = await _settled(api)
    assert rec.got == []
    assert (row.state, row.attempts) == ("failed", 1)
    assert row.last_error == "refused: 127.0.0.1 is a loopback address"


class Rebound(WebhookDeliverer):
    """DNS rebinding, made repeatable: the name's answer at check time was 127.0.0.2; asked
    again (as an unpinned client would when connecting) the system says 127.0.0.1."""

    async def resolve(self, target: Target) -> IPAddress:
        checked = ipaddress.ip_address("127.0.0.2")
        self.policy.check_address(checked)
        return checked


@pytest.mark.skipif(
    LOOPBACK_NAME is None or LOOPBACK_NAME[1] != "127.0.0.1",
    reason="no host name here resolves to 127.0.0.1",
)
async def test_delivery_connects_to_the_address_it_checked(settings: Settings) -> None:
    assert LOOPBACK_NAME is not None
    name = LOOPBACK_NAME[0]
    with contextlib.ExitStack() as stack:
        checked = stack.enter_context(receiver("127.0.0.2"))
        try:  # the same port on the address the name resolves to now
            other = stack.enter_context(receiver("127.0.0.1", port=checked.port))
        except OSError:
            pytest.skip(f"port {checked.port} is taken on 127.0.0.1")
        async with api_with(settings, dispatch=False) as api:
            await _inbound(api, f"http://{name}:{checked.port}/hook")
            policy = DestinationPolicy.from_settings(["127.0.0.2/32"])
            deliverer = Rebound(api.rt.db.writer, policy=policy)
            try:
                assert await deliverer.run_once() == 1
            finally:
                await deliverer.aclose()
            row = await _settled(api)
    assert other.got == []  # what the name points to now was never asked
    assert [h["host"] for h, _ in checked.got] == [f"{name}:{checked.port}"]
    assert (row.state, row.last_status) == ("delivered", 204)


def _certificate(tmp: Path, name: str) -> Path:
    """A self-signed certificate for ``name`` (key and certificate in one PEM file)."""
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
    )
    pem = tmp / "both.pem"
    pem.write_text(key.read_text() + cert.read_text())
    return pem


@pytest.mark.skipif(LOOPBACK_NAME is None, reason="no host name here resolves to loopback")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
@pytest.mark.parametrize("cert_name", ["receiver", "someone-else.example"])
async def test_https_to_the_pinned_address_verifies_the_name(
    settings: Settings, tmp_path: Path, cert_name: str
) -> None:
    """Connecting to an IP must not weaken TLS: SNI and the certificate check use the name."""
    assert LOOPBACK_NAME is not None
    name, address = LOOPBACK_NAME
    pem = _certificate(tmp_path, name if cert_name == "receiver" else cert_name)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(pem)
    trust = ssl.create_default_context(cafile=str(pem))
    client = httpx.AsyncClient(verify=trust, trust_env=False, follow_redirects=False)
    network = str(ipaddress.ip_network(address))
    with receiver(address, tls=server_tls) as rec:
        async with api_with(settings, dispatch=False) as api:
            await _inbound(api, f"https://{name}:{rec.port}/hook")
            policy = DestinationPolicy.from_settings([network])
            deliverer = WebhookDeliverer(api.rt.db.writer, policy=policy, client=client)
            try:
                assert await deliverer.run_once() == 1
            finally:
                await client.aclose()
            row = await _settled(api)
    if cert_name == "receiver":
        assert (row.state, row.last_status) == ("delivered", 204)
        assert rec.sni == [name]
        assert [h["host"] for h, _ in rec.got] == [f"{name}:{rec.port}"]
    else:  # a certificate for another name is refused, although the address is right
        assert (row.state, row.last_status) == ("pending", None)
        assert "CERTIFICATE_VERIFY_FAILED" in row.last_error
        assert rec.got == []


async def test_allowed_networks_open_only_themselves(settings: Settings) -> None:
    opened = [
        "http://127.0.0.1:8080/hook",
        "http://127.1/hook",
        "http://localhost:8080/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ]
    still_closed = ["http://10.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/"]
    async with api_with(settings, dispatch=False, webhook_allowed_networks=["127.0.0.0/8"]) as api:
        for i, url in enumerate(opened):
            body = await api.get("inboundCallWaiting", phone=f"7916123450{i}", callback_url=url)
            assert body["status"] is True, (url, body)
        for url in still_closed:
            body = await api.get("inboundCallWaiting", phone=PHONE, callback_url=url)
            assert (body["status"], body["code"]) == (False, 2), (url, body)
        assert await _stored(api) == (len(opened), 0)
