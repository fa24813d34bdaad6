"""Trunk hosts given as names are found through NAPTR, SRV and A records (RFC 3263), asked of
a real DNS server (dnsmasq) started by the test; calls fail over across the addresses found."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from opencaller.config import Settings
from opencaller.domain.clock import Clock
from opencaller.telephony.base import CallKind, CallRequest, Outcome
from opencaller.telephony.sip.config import TrunkConfig
from opencaller.telephony.sip.resolver import ResolveError, Resolver, Srv, naptr_order, srv_order

from ..support import make_api
from .dnsmasq import DNSMASQ, Dnsmasq
from .helpers import provider
from .sipp import Sipp, render

pytestmark = pytest.mark.skipif(
    shutil.which(DNSMASQ) is None,
    reason="dnsmasq is not installed (apt-get install dnsmasq-base)",
)

RECORDS = [
    # _sip._udp: b first (priority 10), then a (20).
    "srv-host=_sip._udp.trunk.test,a.trunk.test,5080,20,10",
    "srv-host=_sip._udp.trunk.test,b.trunk.test,5070,10,10",
    "srv-host=_sip._tcp.trunk.test,a.trunk.test,5090,10,10",
    "srv-host=_sips._tcp.trunk.test,b.trunk.test,5091,10,10",
    "host-record=a.trunk.test,127.0.0.2",
    "host-record=b.trunk.test,127.0.0.3",
    # NAPTR on another name: TCP preferred (order 10), UDP next; the SRV names they point
    # to are not the default ones, so the answer shows NAPTR was read.
    'naptr-record=naptr.test,20,50,"s","SIP+D2U","",_sip._udp.udp-side.test',
    'naptr-record=naptr.test,10,50,"s","SIP+D2T","",_sip._tcp.tcp-side.test',
    "srv-host=_sip._udp.udp-side.test,a.trunk.test,6001,10,10",
    "srv-host=_sip._tcp.tcp-side.test,b.trunk.test,6002,10,10",
    "srv-host=_sip._tcp.naptr.test,a.trunk.test,6666,10,10",  # ignored: NAPTR says otherwise
    # A name without SRV.
    "host-record=plain.test,127.0.0.4",
    # An SRV for a name that is also used with an explicit port (which skips SRV).
    "srv-host=_sip._udp.a.trunk.test,b.trunk.test,7000,10,10",
]


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Dnsmasq]:
    server = Dnsmasq(tmp_path / "dns", RECORDS, ttl=60)
    try:
        yield server.start()
    finally:
        server.stop()


def req(code: str, n: int) -> CallRequest:
    return CallRequest(ucaller_id=n, destination="79161234567", code=code, kind=CallKind.FLASH)


def trunk(host: str, **extra: Any) -> TrunkConfig:
    return TrunkConfig.model_validate({"name": "t", "host": host, **extra})


async def test_srv_targets_in_priority_order_each_with_its_port(dnsmasq: Dnsmasq) -> None:
    r = Resolver([dnsmasq.nameserver])
    assert await r.targets(trunk("trunk.test")) == [("127.0.0.3", 5070), ("127.0.0.2", 5080)]
    assert await r.targets(trunk("trunk.test", transport="tcp")) == [("127.0.0.2", 5090)]
    assert await r.targets(trunk("trunk.test", transport="tls")) == [("127.0.0.3", 5091)]


async def test_naptr_picks_the_srv_name_for_the_transport(dnsmasq: Dnsmasq) -> None:
    r = Resolver([dnsmasq.nameserver])
    assert await r.targets(trunk("naptr.test", transport="tcp")) == [("127.0.0.3", 6002)]
    assert await r.targets(trunk("naptr.test")) == [("127.0.0.2", 6001)]


async def test_a_port_or_an_ip_skips_srv(dnsmasq: Dnsmasq) -> None:
    r = Resolver([dnsmasq.nameserver])
    assert await r.targets(trunk("a.trunk.test", port=5099)) == [("127.0.0.2", 5099)]
    assert await r.targets(trunk("192.0.2.7")) == [("192.0.2.7", 5060)]
    assert await r.targets(trunk("192.0.2.7", transport="tls")) == [("192.0.2.7", 5061)]


async def test_no_srv_means_the_host_on_the_default_port(dnsmasq: Dnsmasq) -> None:
    r = Resolver([dnsmasq.nameserver])
    assert await r.targets(trunk("plain.test")) == [("127.0.0.4", 5060)]
    assert await r.targets(trunk("plain.test", transport="tls")) == [("127.0.0.4", 5061)]
    with pytest.raises(ResolveError):
        await r.targets(trunk("missing.test"))


async def test_answers_are_cached_and_outlive_a_dns_outage(tmp_path: Path) -> None:
    server = Dnsmasq(tmp_path / "dns", RECORDS, ttl=1).start()
    try:
        r = Resolver([server.nameserver], timeout_s=0.5)
        first = await r.targets(trunk("trunk.test"))
        asked = r.queries
        assert await r.targets(trunk("trunk.test")) == first
        assert r.queries == asked  # within the TTL: no new question
    finally:
        server.stop()
    await asyncio.sleep(1.2)  # the 1 s TTL runs out while the server is gone
    assert await r.targets(trunk("trunk.test")) == first
    assert r.queries > asked  # it did ask again, and kept the last good answer


def test_srv_order_is_weighted_within_a_priority() -> None:
    recs = [Srv(10, 90, 1, "heavy"), Srv(10, 10, 2, "light"), Srv(5, 0, 3, "first")]
    rng = random.Random(7)
    orders = [[s.target for s in srv_order(recs, rng)] for _ in range(2000)]
    assert all(o[0] == "first" for o in orders)  # the lower priority always comes first
    heavy_second = sum(o[1] == "heavy" for o in orders) / len(orders)
    assert 0.85 < heavy_second < 0.95  # 90 of 100 by weight (RFC 2782)
    zero = [Srv(1, 0, 1, "z1"), Srv(1, 0, 2, "z2")]
    assert {tuple(s.target for s in srv_order(zero, rng)) for _ in range(200)} == {
        ("z1", "z2"),
        ("z2", "z1"),
    }


def test_naptr_order_on_dnspython_records() -> None:
    texts = [
        '30 10 "s" "SIP+D2T" "" _sip._tcp.late.test.',
        '10 90 "s" "SIP+D2T" "" _sip._tcp.second.test.',
        '10 10 "s" "SIP+D2T" "" _sip._tcp.first.test.',
        '5 10 "s" "SIPS+D2T" "" _sips._tcp.tls.test.',
        '5 10 "u" "SIP+D2T" "!^.*$!sip:x@y!" .',  # not an SRV pointer
    ]
    rds = [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.NAPTR, t) for t in texts]
    assert naptr_order(rds, "tcp") == [
        "_sip._tcp.first.test",
        "_sip._tcp.second.test",
        "_sip._tcp.late.test",
    ]
    assert naptr_order(rds, "tls") == ["_sips._tcp.tls.test"]
    assert naptr_order(rds, "udp") == []


async def test_a_call_fails_over_to_the_next_srv_target(
    sipp: Sipp, tmp_path: Path, settings: Settings
) -> None:
    """The first SRV target answers 503; the call goes on to the second, which rings."""
    sf = render(
        "uas_reject.tmpl.xml",
        tmp_path / "uas_503.xml",
        CODE="503",
        REASON="Service Unavailable",
        CAUSE="41",
    )
    busy = sipp.start(sf, calls=1)
    ringing = sipp.start("uas_ring_cancel.xml", calls=1)
    server = Dnsmasq(
        tmp_path / "dns",
        [
            f"srv-host=_sip._udp.carrier.test,one.carrier.test,{busy.port},10,10",
            f"srv-host=_sip._udp.carrier.test,two.carrier.test,{ringing.port},20,10",
            "host-record=one.carrier.test,127.0.0.1",
            "host-record=two.carrier.test,127.0.0.1",
        ],
    ).start()
    sip = {
        "bind_ip": "127.0.0.1",
        "local_ip": "127.0.0.1",
        "port": 0,
        "rtp_port_min": 45000,
        "rtp_port_max": 45999,
        "dns_nameservers": [server.nameserver],
        "trunks": [{"name": "carrier", "host": "carrier.test", "ring_hold_s": 0.2}],
        "caller_ids": {"prefixes": ["7900555"]},
    }
    try:
        async with make_api(
            settings.model_copy(update={"provider": "sip", "sip": sip}), Clock()
        ) as api:
            body = await api.get("initCall", phone="79161234567", code="4719")
            info = await api.wait_final(body["ucaller_id"], within_s=30)
    finally:
        server.stop()
    await asyncio.to_thread(busy.assert_ok)
    await asyncio.to_thread(ringing.assert_ok)
    assert (info["call_status"], info["call_outcome"], info["sip_code"]) == (1, "delivered", 180)
    assert [r["from_num"] for r in busy.lines("INVITE")] == ["79005554719"]
    assert [(r["to_num"], r["from_num"]) for r in ringing.lines("INVITE")] == [
        ("79161234567", "79005554719")
    ]


async def test_a_silent_srv_target_is_tried_last_for_a_while(sipp: Sipp, tmp_path: Path) -> None:
    """The first call waits out the silent primary and rings on the secondary; the next call
    goes to the secondary at once (the primary is down for ``target_down_s``)."""
    silent = sipp.start("uas_silent.xml", calls=1)
    ringing = sipp.start("uas_ring_cancel.xml", calls=2)
    server = Dnsmasq(
        tmp_path / "dns",
        [
            f"srv-host=_sip._udp.carrier.test,one.carrier.test,{silent.port},10,10",
            f"srv-host=_sip._udp.carrier.test,two.carrier.test,{ringing.port},20,10",
            "host-record=one.carrier.test,127.0.0.1",
            "host-record=two.carrier.test,127.0.0.1",
        ],
    ).start()
    p = provider(
        {"name": "carrier", "host": "carrier.test", "ring_hold_s": 0.2, "progress_timeout_s": 2},
        dns_nameservers=[server.nameserver],
    )
    await p.start()
    try:
        first = await p.place_call(req("4719", 1))
        second = await p.place_call(req("0038", 2))
    finally:
        await p.close()
        server.stop()
    await asyncio.to_thread(ringing.assert_ok)
    silent.kill()
    assert [(r.outcome, r.sip_code) for r in (first, second)] == [(Outcome.DELIVERED, 180)] * 2
    # The first call's record says which address was silent, then what the next one did.
    assert first.reason.startswith(f"127.0.0.1:{silent.port}: no response from the trunk; ")
    assert second.reason == "180 then CANCEL"  # one address tried: no list
    assert len(silent.lines("INVITE")) == 1
    assert [r["from_num"] for r in ringing.lines("INVITE")] == ["79005554719", "79005550038"]
