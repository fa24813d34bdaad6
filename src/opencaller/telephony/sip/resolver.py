"""Finding a trunk's next hops from its host name (RFC 3263), with dnspython.

* an IP address is used as it is, with the configured port;
* a name with a port given (``srv`` false): its A records, with that port;
* a name without a port: NAPTR records whose service fits the trunk's transport
  (``SIP+D2U``, ``SIP+D2T``, ``SIPS+D2T``), in order/preference order, name the SRV records
  to read; without NAPTR, the SRV name is ``_sip._udp.``, ``_sip._tcp.`` or ``_sips._tcp.``
  + host. SRV targets come in priority order, weighted at random within a priority
  (RFC 2782), each expanded to its A records. No SRV at all: the host's A records.

Answers are cached for their TTL (failures for ``NEGATIVE_TTL_S``); when a refresh fails
the last good list is used, so a DNS outage does not stop calls. Only IPv4 (A) is looked
up: the SIP socket is IPv4.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from opencaller.telephony.sip.config import TrunkConfig

log = logging.getLogger("opencaller.sip")

NEGATIVE_TTL_S = 30.0  # a missing record is asked again after this long
MIN_TTL_S = 1.0
HOSTS_TTL_S = 60.0  # names only the system resolver knows (/etc/hosts)
MAX_TARGETS = 8  # a call attempt tries at most this many of a trunk's addresses

SRV_PREFIX = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}
NAPTR_SERVICE = {"udp": "SIP+D2U", "tcp": "SIP+D2T", "tls": "SIPS+D2T"}

Addr = tuple[str, int]


class ResolveError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


def srv_order(records: Sequence[Srv], rng: random.Random | None = None) -> list[Srv]:
    """RFC 2782: lowest priority first; within a priority, a weighted random draw without
    replacement (zero-weight records keep a small chance, and come last on average)."""
    pick = rng or random.Random()
    out: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            chosen = pick.randrange(len(group))  # all weights zero: any order
            if total > 0:
                point = pick.uniform(0, total)
                running = 0
                for i, r in enumerate(group):
                    running += r.weight
                    if running >= point:
                        chosen = i
                        break
            out.append(group.pop(chosen))
    return out


def naptr_order(records: Sequence[Any], proto: str) -> list[str]:
    """SRV names from NAPTR records (``dns.rdtypes.ANY.NAPTR``) for ``proto``, best first."""
    want = NAPTR_SERVICE[proto].lower()
    fitting = [
        r for r in records if r.flags.decode().lower() == "s" and r.service.decode().lower() == want
    ]
    fitting.sort(key=lambda r: (r.order, r.preference))
    return [r.replacement.to_text(omit_final_dot=True) for r in fitting]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    def __init__(self, nameservers: Sequence[str] = (), timeout_s: float = 3.0) -> None:
        self._dns = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            self._dns.nameservers = [_nameserver(n) for n in nameservers]
        self._dns.lifetime = timeout_s
        self._cache: dict[tuple[str, str], tuple[float, list[Any]]] = {}
        self._last_good: dict[tuple[str, str, int, str], list[Addr]] = {}
        self.queries = 0  # DNS questions actually sent (the cache saves the rest)

    async def targets(self, trunk: TrunkConfig) -> list[Addr]:
        """The trunk's addresses in the order to try them. Raises ResolveError."""
        key = (trunk.name, trunk.host, trunk.port, trunk.transport)
        try:
            found = await self._targets(trunk)
        except ResolveError:
            stale = self._last_good.get(key)
            if stale is None:
                raise
            log.warning("trunk %s: DNS failed, using the last addresses known", trunk.name)
            return stale
        self._last_good[key] = found
        return found

    async def _targets(self, trunk: TrunkConfig) -> list[Addr]:
        host = trunk.host.strip("[]")
        if _is_ip(host):
            return [(host, trunk.port)]
        if not trunk.srv:
            return [(ip, trunk.port) for ip in await self._addresses(host)]
        srvs = await self._srv(host, trunk.transport)
        if not srvs:  # no SRV: the host itself, on the default port of the transport
            return [(ip, trunk.port) for ip in await self._addresses(host)]
        out: list[Addr] = []
        for srv in srvs:
            try:
                out += [(ip, srv.port) for ip in await self._addresses(srv.target)]
            except ResolveError as e:
                log.warning("trunk %s: SRV target %s: %s", trunk.name, srv.target, e)
            if len(out) >= MAX_TARGETS:
                break
        if not out:
            raise ResolveError(f"no address for any SRV target of {host}")
        return _unique(out)[:MAX_TARGETS]

    async def _srv(self, host: str, proto: str) -> list[Srv]:
        try:
            naptr = await self._query(host, "NAPTR")
        except ResolveError as e:
            # NAPTR is optional (§4.1): a server that cannot answer it is asked for SRV.
            log.warning("%s; trying SRV", e)
            self._cache[(host.lower(), "NAPTR")] = (time.monotonic() + NEGATIVE_TTL_S, [])
            naptr = []
        names = naptr_order(naptr, proto)
        for name in names or [SRV_PREFIX[proto] + host]:
            rrs = await self._query(name, "SRV")
            records = [
                Srv(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
                for r in rrs
                if r.target.to_text() != "."  # "." means: no such service here
            ]
            if records:
                return srv_order(records)
        return []

    async def _addresses(self, host: str) -> list[str]:
        ips = [r.address for r in await self._query(host, "A")]
        if ips:
            return ips
        # Names only the system knows (/etc/hosts, "localhost").
        key = (host, "hosts")
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return list(hit[1])
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except OSError as e:
            raise ResolveError(f"cannot resolve {host}: {e}") from e
        found = _unique([str(i[4][0]) for i in infos])
        self._cache[key] = (now + HOSTS_TTL_S, found)
        if not found:
            raise ResolveError(f"cannot resolve {host}")
        return found

    async def _query(self, name: str, rdtype: str) -> list[Any]:
        key = (name.lower(), rdtype)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        self.queries += 1
        try:
            answer = await self._dns.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._cache[key] = (now + NEGATIVE_TTL_S, [])
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            # No answer is not "no records": serve what we knew, else let the caller fall
            # back on the trunk's last good addresses.
            if hit is not None:
                return hit[1]
            raise ResolveError(f"DNS {rdtype} {name}: {e}") from e
        records = list(answer)
        ttl = max(MIN_TTL_S, float(answer.rrset.ttl if answer.rrset is not None else 0))
        self._cache[key] = (now + ttl, records)
        return records


def _nameserver(text: str) -> dns.nameserver.Nameserver:
    """ "192.0.2.1", "192.0.2.1:5353", "2001:db8::1" or "[2001:db8::1]:5353"."""
    text = text.strip()
    if _is_ip(text.strip("[]")):
        return dns.nameserver.Do53Nameserver(text.strip("[]"), 53)
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not _is_ip(host.strip("[]")):
        raise ValueError(f"DNS server {text!r} is not an IP address with an optional port")
    return dns.nameserver.Do53Nameserver(host.strip("[]"), int(port))


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))
