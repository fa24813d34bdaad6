"""Where webhooks may go: public http(s) receivers only, unless the operator allows more.

A callback URL is checked twice. When a customer gives it (``check_url``: no DNS lookup, so the
request path can never hang on a resolver) and again when it is delivered (``check_address`` on
every address the name resolves to, right before connecting to one of them). Hosts are read the
way the HTTP client (httpx) reads them, and numeric hosts the way the C resolver does
(``inet_aton``: ``127.1``, ``2130706433``, ``0x7f000001`` and ``0177.0.0.1`` all mean
127.0.0.1), so the check judges the address a connection would really go to.

Pure functions and values only: used by wire/ (request time) and webhooks/ (delivery).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits (RFC 6052).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IANA special-purpose blocks that are not globally reachable but that older Pythons' tables
# (3.11 before 3.11.10) still call global; the properties cover everything else.
_SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(n) for n in ("192.0.0.0/24", "3fff::/20", "5f00::/16")
)
# A last label that is a number makes the host an IPv4 address for the resolver (and for the
# WHATWG URL standard), however many dots it has.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
_IPV4_LEGACY = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
# Characters no sane callback URL has, and that parsers disagree about.
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


class ForbiddenDestination(ValueError):
    """The URL or address is not a place webhooks may be sent to; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked callback URL: what to resolve and where the Host header points."""

    url: httpx.URL
    host: str  # as the client connects to it: lower case, IDNA, no brackets, no trailing dot
    port: int
    address: IPAddress | None  # set when the host is an IP address in any spelling


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings (``webhook_allowed_networks``) -> networks; a bad one is a startup error."""
    out: list[IPNetwork] = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as exc:
            msg = f"webhook_allowed_networks: {item!r} is not a CIDR network ({exc})"
            raise ValueError(msg) from None
    return tuple(out)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def why_not_public(ip: IPAddress) -> str | None:
    """None for an address on the public internet, else what it is ("is a loopback address")."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            reason = why_not_public(inner)
            return None if reason is None else f"carries {inner}, which {reason}"
        if ip.is_site_local:
            return "is a site-local address"
    checks = (
        (ip.is_unspecified, "is the unspecified address"),
        (ip.is_loopback, "is a loopback address"),
        (ip.is_link_local, "is a link-local address"),
        (ip.is_multicast, "is a multicast address"),
        (ip.is_private, "is a private or special-purpose address"),
        (ip.is_reserved, "is a reserved address"),
        (not ip.is_global, "is not a public address"),  # e.g. shared address space 100.64.0.0/10
        (any(ip in n for n in _SPECIAL_PURPOSE), "is a special-purpose address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def parse_host_address(host: str) -> IPAddress | None:
    """The IP address a host names by itself (no DNS), in any form the resolver accepts;
    None for a DNS name. Raises ForbiddenDestination for numeric hosts that are no address."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return None
    try:
        if not _IPV4_LEGACY.fullmatch(host):
            raise OSError
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise ForbiddenDestination(f"host {host!r} is not a valid IPv4 address") from None


def is_local_name(host: str) -> bool:
    """Names that mean this machine whatever DNS says (RFC 6761)."""
    return host == "localhost" or host.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Public addresses, plus the operator's ``webhook_allowed_networks``."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, networks: Iterable[str]) -> DestinationPolicy:
        return cls(parse_networks(networks))

    def is_allowed(self, ip: IPAddress) -> bool:
        forms: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            forms.append(ip.ipv4_mapped)  # the kernel connects ::ffff:a.b.c.d over IPv4
        return any(f in net for f in forms for net in self.allowed if f.version == net.version)

    def check_address(self, ip: IPAddress) -> None:
        """Raise ForbiddenDestination unless a webhook may connect to ``ip``."""
        if self.is_allowed(ip):
            return
        reason = why_not_public(ip)
        if reason is not None:
            raise ForbiddenDestination(f"{ip} {reason}")

    def check_url(self, raw: str) -> Target:
        """Everything that can be decided without DNS. Raises ForbiddenDestination."""
        if _BAD_CHARS.search(raw):
            raise ForbiddenDestination("the URL contains spaces, control characters or '\\'")
        try:
            url = httpx.URL(raw)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ForbiddenDestination(f"not a valid URL ({exc})") from None
        if url.scheme not in SCHEMES or not raw.lower().startswith(url.scheme + "://"):
            raise ForbiddenDestination("only http:// and https:// URLs are accepted")
        host = url.raw_host.decode("ascii").lower().rstrip(".")
        if not host:
            raise ForbiddenDestination("the URL has no host")
        if "%" in host:
            raise ForbiddenDestination("percent-encoded hosts and IPv6 zones are not accepted")
        port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
        if not 0 < port < 65536:
            raise ForbiddenDestination(f"port {port} is not valid")
        address = parse_host_address(host)
        if address is not None:
            self.check_address(address)
        elif is_local_name(host):
            loopback = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
            if not any(self.is_allowed(ip) for ip in loopback):
                raise ForbiddenDestination(f"{host!r} is this machine")
        return Target(url=url, host=host, port=port, address=address)

    def refusal(self, raw: str) -> str | None:
        """Why ``raw`` may not be a callback URL (request-time check), or None."""
        try:
            self.check_url(raw)
        except ForbiddenDestination as exc:
            return str(exc)
        return None
