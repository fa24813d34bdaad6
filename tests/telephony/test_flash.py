"""Flash calls against SIPp: caller ID, ringing + CANCEL, rejections, auth, loss, failover."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from opencaller.telephony.base import CallEvent, CallKind, CallRequest, Outcome, ProviderError

from .helpers import provider, trunk
from .sipp import Sipp, render

pytestmark = pytest.mark.sip


def req(code: str, n: int = 1, dest: str = "79161234567") -> CallRequest:
    return CallRequest(ucaller_id=n, destination=dest, code=code, kind=CallKind.FLASH)


async def test_ringing_is_delivered_with_code_in_from_and_pai(sipp: Sipp) -> None:
    far = sipp.start("uas_ring_cancel.xml", calls=3)
    p = provider(trunk("main", far.port))
    await p.start()
    events: list[CallEvent] = []

    async def sink(e: CallEvent) -> None:
        events.append(e)

    try:
        codes = ["4719", "0000", "9999"]
        reports = [await p.place_call(req(c, i), sink) for i, c in enumerate(codes)]
    finally:
        await p.close()
    far.assert_ok()
    for code, rep in zip(codes, reports, strict=True):
        assert rep.outcome is Outcome.DELIVERED, rep
        assert rep.sip_code == 180
        assert rep.caller_id == "7900555" + code
        assert rep.kinds_tried == (CallKind.FLASH,)
        assert rep.progress_at is not None and rep.ended_at is not None
    invites = far.lines("INVITE")
    assert [(r["from_num"][-4:], r["pai_num"][-4:]) for r in invites] == [(c, c) for c in codes]
    assert all(
        r["from_num"] == r["pai_num"] == "7900555" + c for r, c in zip(invites, codes, strict=True)
    )
    cancels = {r["call-id"] for r in far.lines("CANCEL")}
    assert cancels == {r["call-id"] for r in invites}
    assert [e.state for e in events if e.state == "ringing"] == ["ringing"] * 3


REJECTS = [
    (486, "Busy Here", 17, Outcome.BUSY),
    (404, "Not Found", 1, Outcome.NOT_FOUND),
    (480, "Temporarily Unavailable", 18, Outcome.UNAVAILABLE),
    (603, "Decline", 21, Outcome.REJECTED),
]


@pytest.mark.parametrize(("code", "reason", "cause", "outcome"), REJECTS)
async def test_rejections_map_to_outcomes(
    sipp: Sipp, tmp_path: Path, code: int, reason: str, cause: int, outcome: Outcome
) -> None:
    sf = render(
        "uas_reject.tmpl.xml",
        tmp_path / f"uas_reject_{code}.xml",
        CODE=str(code),
        REASON=reason,
        CAUSE=str(cause),
    )
    far = sipp.start(sf, calls=1)
    p = provider(trunk("main", far.port))
    await p.start()
    try:
        rep = await p.place_call(req("1234"))
    finally:
        await p.close()
    far.assert_ok()
    assert rep.outcome is outcome
    assert rep.sip_code == code
    assert rep.q850_cause == cause
    assert reason in rep.reason
    assert not rep.outcome.reached
    # The non-2xx final was ACKed (SIPp logs the ACK it waited for).
    assert len(far.lines("ACK")) == 1


@pytest.mark.parametrize("right", [True, False])
async def test_digest_auth_401(sipp: Sipp, tmp_path: Path, right: bool) -> None:
    sf = render("uas_auth.tmpl.xml", tmp_path / "uas_auth.xml", CODE="401", HDR="WWW-Authenticate")
    far = sipp.start(sf, calls=2, keys={"user": "trunkuser", "pass": "s3cret"})
    password = "s3cret" if right else "wrong"
    p = provider(trunk("main", far.port, username="trunkuser", password=password))
    await p.start()
    try:
        reps = [await p.place_call(req("5555", i)) for i in range(2)]
    finally:
        await p.close()
    far.assert_ok()
    auth = far.lines("AUTH")
    assert len(auth) == 2
    assert {a["ok"] for a in auth} == {"true" if right else "false"}
    for rep in reps:
        if right:
            assert rep.outcome is Outcome.DELIVERED and rep.sip_code == 180
        else:
            assert rep.outcome is Outcome.REJECTED and rep.sip_code == 403


async def test_proxy_auth_407(sipp: Sipp) -> None:
    far = sipp.start("uas_proxy_auth.xml", calls=1)
    p = provider(trunk("main", far.port, username="trunkuser", password="s3cret"))
    await p.start()
    try:
        rep = await p.place_call(req("4321"))
    finally:
        await p.close()
    far.assert_ok()
    assert rep.outcome is Outcome.DELIVERED
    text = far.log_file.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("PAUTH "))
    params = {k: a or b for k, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', line)}
    ha1 = hashlib.md5(f"trunkuser:{params['realm']}:s3cret".encode()).hexdigest()
    ha2 = hashlib.md5(f"INVITE:{params['uri']}".encode()).hexdigest()
    expected = hashlib.md5(
        f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}".encode()
    ).hexdigest()
    assert params["response"] == expected
    assert params["qop"] == "auth" and params["realm"] == "trunk.test"


async def test_lost_invite_and_cancel_are_retransmitted(sipp: Sipp) -> None:
    n = 20
    far = sipp.start("uas_lossy.xml", calls=n)
    # A short T1 keeps the retransmissions quick; Timer B is still 64*T1 = 6.4 s.
    p = provider(trunk("main", far.port, cps=50), t1_s=0.1, t2_s=0.8)
    await p.start()
    sent: list[tuple[str, int]] = []
    original = p.transport.send

    def counting_send(data: bytes, addr: tuple[str, int]) -> None:
        sent.append((data.split(b" ", 1)[0].decode(), len(data)))
        original(data, addr)

    p.transport.send = counting_send  # type: ignore[method-assign]
    try:
        reps = await asyncio.gather(*(p.place_call(req(f"{i:04d}", i)) for i in range(n)))
    finally:
        await p.close()
    far.assert_ok(timeout=90)
    assert [r.outcome for r in reps] == [Outcome.DELIVERED] * n
    invites = sum(1 for method, _ in sent if method == "INVITE")
    cancels = sum(1 for method, _ in sent if method == "CANCEL")
    # SIPp drops 30 % of what arrives: some INVITEs and CANCELs had to be sent again.
    assert invites > n
    assert cancels > n
    assert len(far.lines("INVITE")) == n and len(far.lines("CANCEL")) == n


async def test_failover_from_503_to_next_trunk(sipp: Sipp, tmp_path: Path) -> None:
    sf = render(
        "uas_reject.tmpl.xml",
        tmp_path / "uas_reject_503.xml",
        CODE="503",
        REASON="Service Unavailable",
        CAUSE="41",
    )
    bad = sipp.start(sf, calls=1)
    good = sipp.start("uas_ring_cancel.xml", calls=1)
    p = provider(trunk("first", bad.port), trunk("second", good.port))
    await p.start()
    try:
        rep = await p.place_call(req("2468"))
    finally:
        await p.close()
    bad.assert_ok()
    good.assert_ok()
    assert rep.outcome is Outcome.DELIVERED
    assert len(bad.lines("INVITE")) == 1
    assert good.lines("INVITE")[0]["from_num"] == "79005552468"


async def test_failover_when_trunk_does_not_answer(sipp: Sipp) -> None:
    from .sipp import free_udp_port

    good = sipp.start("uas_ring_cancel.xml", calls=1)
    dead = trunk("dead", free_udp_port(), progress_timeout_s=1.0)
    p = provider(dead, trunk("second", good.port))
    await p.start()
    try:
        rep = await p.place_call(req("1357"))
    finally:
        await p.close()
    good.assert_ok()
    assert rep.outcome is Outcome.DELIVERED


async def test_no_failover_on_subscriber_answer(sipp: Sipp, tmp_path: Path) -> None:
    sf = render(
        "uas_reject.tmpl.xml", tmp_path / "r486.xml", CODE="486", REASON="Busy Here", CAUSE="17"
    )
    busy = sipp.start(sf, calls=1)
    p = provider(trunk("first", busy.port), trunk("second", 9))  # never reached
    await p.start()
    try:
        rep = await p.place_call(req("1111"))
    finally:
        await p.close()
    busy.assert_ok()
    assert rep.outcome is Outcome.BUSY


async def test_routing_by_destination_prefix(sipp: Sipp) -> None:
    ru = sipp.start("uas_ring_cancel.xml", calls=1)
    other = sipp.start("uas_ring_cancel.xml", calls=1)
    p = provider(trunk("any", other.port), trunk("ru-mobile", ru.port, prefixes=["79"]))
    assert [t.name for t in p.routes("79161234567")] == ["ru-mobile", "any"]
    assert [t.name for t in p.routes("4915112345678")] == ["any"]
    await p.start()
    try:
        a = await p.place_call(req("0001", 1, dest="79161234567"))
        b = await p.place_call(req("0002", 2, dest="4915112345678"))
    finally:
        await p.close()
    ru.assert_ok()
    other.assert_ok()
    assert a.outcome is b.outcome is Outcome.DELIVERED
    assert ru.lines("INVITE")[0]["from_num"].endswith("0001")
    assert other.lines("INVITE")[0]["from_num"].endswith("0002")


async def test_cps_limit_paces_calls(sipp: Sipp) -> None:
    n = 6
    far = sipp.start("uas_ring_cancel.xml", calls=n)
    p = provider(trunk("main", far.port, cps=5))
    await p.start()
    try:
        reps = await asyncio.gather(*(p.place_call(req(f"{i:04d}", i)) for i in range(n)))
    finally:
        await p.close()
    far.assert_ok()
    assert all(r.outcome is Outcome.DELIVERED for r in reps)
    starts = sorted(r.started_at for r in reps)
    # 5 per second with a burst of 1: six calls cannot start within less than ~1 s.
    assert starts[-1] - starts[0] >= 0.9


def test_pool_refuses_codes_it_cannot_cover() -> None:
    p = provider(
        trunk("main", 5060),
        caller_ids={"numbers": ["79005551234"], "ranges": ["79005560000-79005564999"]},
    )
    assert p.check(req("1234")) is None
    assert p.check(req("4999")) is None  # from the range
    why = p.check(req("7777"))
    assert why is not None and "7777" in why
    with pytest.raises(ProviderError, match="7777"):
        asyncio.run(p.place_call(req("7777")))
    assert p.check(req("12a4")) is not None
    empty = provider(trunk("main", 5060), caller_ids={})
    assert "pool" in (empty.check(req("1234")) or "")
