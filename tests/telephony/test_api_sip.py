"""Through the public API with the SIP provider configured: SIPp is the far end of the trunk."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from opencaller.client.webhooks import verify
from opencaller.config import Settings
from opencaller.domain.clock import Clock
from opencaller.telephony.audio import build_prompt

from ..support import Api, make_api
from .sipp import Sipp, render

pytestmark = pytest.mark.sip


def sip_settings(settings: Settings, far_port: int, **extra: Any) -> Settings:
    sip: dict[str, Any] = {
        "bind_ip": "127.0.0.1",
        "local_ip": "127.0.0.1",
        "port": 0,
        "rtp_port_min": 43000,
        "rtp_port_max": 43999,
        "trunks": [
            {
                "name": "main",
                "host": "127.0.0.1",
                "port": far_port,
                "ring_hold_s": 0.2,
                "progress_timeout_s": 8.0,
                "cps": 100,
            }
        ],
        "caller_ids": {"prefixes": ["7900555"]},
        "inbound_numbers": ["74950000001"],
        **extra,
    }
    return settings.model_copy(update={"provider": "sip", "sip": sip})


@asynccontextmanager
async def sip_api(settings: Settings, far_port: int, **extra: Any) -> AsyncIterator[Api]:
    async with make_api(sip_settings(settings, far_port, **extra), Clock()) as api:
        yield api


async def test_init_call_rings_from_a_number_ending_in_the_code(
    sipp: Sipp, settings: Settings
) -> None:
    far = sipp.start("uas_ring_cancel.xml", calls=2)
    async with sip_api(settings, far.port) as api:
        first = await api.get("initCall", phone="79161234567", code="4719")
        second = await api.post_json("initCall", {"phone": 79261234567, "code": 38})
        infos = [await api.wait_final(b["ucaller_id"], within_s=20) for b in (first, second)]
        balance = await api.get("getBalance")
    await asyncio.to_thread(far.assert_ok)
    assert [i["call_status"] for i in infos] == [1, 1]
    assert [i["call_outcome"] for i in infos] == ["delivered", "delivered"]
    assert [i["sip_code"] for i in infos] == [180, 180]
    invites = sorted(far.lines("INVITE"), key=lambda r: r["to_num"])
    assert [(r["to_num"], r["from_num"], r["pai_num"]) for r in invites] == [
        ("79161234567", "79005554719", "79005554719"),
        ("79261234567", "79005550038", "79005550038"),
    ]
    assert len(far.lines("CANCEL")) == 2  # hung up on ringing: a missed call, nobody pays
    assert balance["rub_balance"] == pytest.approx(100 - 2 * 0.3)


@pytest.mark.parametrize(
    ("code", "reason", "cause", "outcome"),
    [
        (486, "Busy Here", 17, "busy"),
        (404, "Not Found", 1, "not_found"),
        (480, "Temporarily Unavailable", 18, "unavailable"),
        (603, "Decline", 21, "rejected"),
    ],
)
async def test_rejected_calls_are_not_reached_and_refunded(
    sipp: Sipp,
    settings: Settings,
    tmp_path: Path,
    code: int,
    reason: str,
    cause: int,
    outcome: str,
) -> None:
    sf = render(
        "uas_reject.tmpl.xml",
        tmp_path / f"r{code}.xml",
        CODE=str(code),
        REASON=reason,
        CAUSE=str(cause),
    )
    far = sipp.start(sf, calls=1)
    async with sip_api(settings, far.port) as api:
        body = await api.get("initCall", phone="79161234567", code="1234")
        info = await api.wait_final(body["ucaller_id"], within_s=20)
        balance = await api.get("getBalance")
    await asyncio.to_thread(far.assert_ok)
    assert info["call_status"] == 0
    assert info["call_outcome"] == outcome
    assert info["sip_code"] == code
    assert balance["rub_balance"] == 100


@pytest.mark.parametrize("right", [True, False])
async def test_digest_auth_to_the_trunk(
    sipp: Sipp, settings: Settings, tmp_path: Path, right: bool
) -> None:
    sf = render("uas_auth.tmpl.xml", tmp_path / "auth.xml", CODE="401", HDR="WWW-Authenticate")
    far = sipp.start(sf, calls=1, keys={"user": "trunkuser", "pass": "s3cret"})
    trunk = {
        "name": "main",
        "host": "127.0.0.1",
        "port": far.port,
        "ring_hold_s": 0.2,
        "username": "trunkuser",
        "password": "s3cret" if right else "wrong",
    }
    async with sip_api(settings, far.port, trunks=[trunk]) as api:
        body = await api.get("initCall", phone="79161234567", code="5555")
        info = await api.wait_final(body["ucaller_id"], within_s=20)
    await asyncio.to_thread(far.assert_ok)
    assert [a["ok"] for a in far.lines("AUTH")] == ["true" if right else "false"]
    if right:
        assert (info["call_status"], info["sip_code"]) == (1, 180)
    else:
        assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (0, "rejected", 403)


class RtpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.payload = bytearray()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.payload += data[12:]  # the 12-byte RTP header off: what was said


async def test_voice_code_through_the_api(sipp: Sipp, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
    far = sipp.start(
        "uas_answer.xml", calls=1, keys={"rtp_port": str(transport.get_extra_info("sockname")[1])}
    )
    try:
        async with sip_api(settings, far.port) as api:
            body = await api.post_json(
                "initCall", {"phone": 79161234567, "code": "4719", "voice": True}
            )
            info = await api.wait_final(body["ucaller_id"], within_s=40)
            balance = await api.get("getBalance")
    finally:
        transport.close()
    await asyncio.to_thread(far.assert_ok)
    assert (info.get("call_status"), info.get("call_outcome"), info.get("sip_code")) == (
        1,
        "answered",
        200,
    ), info
    assert bytes(sink.payload) == build_prompt("4719", "ru")  # the code, said twice
    assert len(far.lines("BYE")) == 1
    assert balance["rub_balance"] == pytest.approx(100 - 2.0)  # the voice price


async def test_test_numbers_never_reach_the_trunk(sipp: Sipp, settings: Settings) -> None:
    far = sipp.start("uas_ring_cancel.xml", calls=1)
    async with sip_api(settings, far.port) as api:
        body = await api.get("initCall", phone="79000000001")
        info = await api.wait_final(body["ucaller_id"])
    far.kill()
    assert info["call_status"] == 1 and info["is_test"] is True
    assert far.lines("INVITE") == []


async def test_a_code_the_pool_cannot_cover_is_error_5(sipp: Sipp, settings: Settings) -> None:
    far = sipp.start("uas_ring_cancel.xml", calls=1)
    async with sip_api(
        settings, far.port, caller_ids={"numbers": ["79005550001", "79005550002"]}
    ) as api:
        body = await api.get("initCall", phone="79161234567", code="7777")
        ok = await api.get("initCall", phone="79161234568", code="0002")
        await api.wait_final(ok["ucaller_id"], within_s=20)
    far.kill()
    assert body["status"] is False and body["code"] == 5
    assert "7777" in body["error"]


class Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


async def test_inbound_verification_calls_the_webhook(
    sipp: Sipp, settings: Settings, tmp_path: Path
) -> None:
    Receiver.got = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{http.server_address[1]}/hook"
    try:
        loopback = settings.model_copy(update={"webhook_allowed_networks": ["127.0.0.0/8"]})
        async with sip_api(loopback, 9) as api:
            waiting = await api.get("inboundCallWaiting", phone="+79161234567", callback_url=hook)
            assert waiting["status"] is True, waiting
            number = waiting["confirmation_number"]
            assert number == "74950000001"
            pending = await api.get("getInfo", uid=waiting["ucaller_id"])
            # The subscriber dials our number: PAI carries their number, From something else.
            csv = tmp_path / "calls.csv"
            csv.write_text(f"SEQUENTIAL\n79161234567;{number};anonymous\n")
            port = api.rt.provider.port  # type: ignore[attr-defined]
            caller = sipp.start(
                "uac_inbound.xml", calls=1, inf=csv, rate=1, remote=f"127.0.0.1:{port}"
            )
            await asyncio.to_thread(caller.assert_ok, 60)
            info = await api.wait_final(waiting["ucaller_id"], within_s=20)
            for _ in range(200):
                if Receiver.got:
                    break
                await asyncio.sleep(0.05)
    finally:
        http.shutdown()
    assert pending["call_status"] == -1
    assert info["call_status"] == 1
    assert info["verified"] is True and isinstance(info["verified_at"], int)  # the call verifies
    assert len(caller.lines("FINAL")) == 1  # SIPp was declined with 603: free for the caller
    assert len(Receiver.got) == 1
    headers, body = Receiver.got[0]
    payload = json.loads(body)
    assert payload == {
        "callId": str(waiting["ucaller_id"]),
        "callbackLink": hook,
        "clientNumber": "79161234567",
        "confirmationNumber": "74950000001",
        "isMnp": False,
        "operatorName": payload["operatorName"],
        "operatorNameMnp": None,
        "regionName": payload["regionName"],
    }
    assert isinstance(payload["operatorName"], (str, type(None)))
    assert headers["x-opencaller-event"] == "inbound_call"
    verify(api.key, body, headers["x-opencaller-signature"])  # raises if it does not match
