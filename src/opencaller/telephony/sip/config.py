"""Typed SIP settings, parsed from ``Settings.sip`` (the ``[sip]`` table of the TOML file)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DIGITS = re.compile(r"^[0-9]+$")


def _digits(value: str) -> str:
    v = value.strip().lstrip("+").replace("-", "").replace(" ", "")
    if not _DIGITS.match(v):
        raise ValueError(f"{value!r} is not a phone number (digits, optional leading '+')")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumberFormat(_Model):
    """How a number is written in a URI for one trunk."""

    plus: bool = True  # "+79001234567" rather than "79001234567"
    user_phone: bool = False  # append ";user=phone" to sip: URIs
    # "tel:+7900..." instead of "sip:+7900...@domain" in P-Asserted-Identity and
    # Remote-Party-ID only; From always stays a sip: URI.
    tel_uri: bool = False


class TrunkConfig(_Model):
    name: str
    host: str
    port: int = 5060
    username: str | None = None
    password: str | None = None
    realm: str | None = None  # answer challenges only from this realm (None: any)
    auth_username: str | None = None  # digest user when it differs from the From user
    from_domain: str | None = None  # host part of From/PAI; default: the trunk host
    caller_id: NumberFormat = Field(default_factory=NumberFormat)  # From, PAI, RPID
    callee: NumberFormat = Field(default_factory=lambda: NumberFormat(plus=False))  # R-URI, To
    remote_party_id: bool = False  # also send Remote-Party-ID (old gateways read only it)
    cps: float = 50.0  # calls per second the operator allows on this trunk
    max_in_flight: int = 200
    ring_hold_s: float = 1.5  # keep ringing this long after 180 before CANCEL (0: at once)
    hold_on_183: bool = True  # treat 183 Session Progress like 180
    progress_timeout_s: float = 15.0  # no 18x by then: CANCEL, outcome no_progress
    answer_timeout_s: float = 30.0  # voice: ringing this long without answer: no_answer
    prefixes: list[str] = Field(default_factory=list)  # destination prefixes; empty: all
    failover: bool = True  # try the next trunk on 5xx or no response
    # Hard limit on one call over this trunk; default: derived from the timeouts above
    # (docs/telephony.md, "Deadlines"). Past it the call is ended on the wire.
    max_call_s: float | None = Field(default=None, gt=0)
    # Every INVITE carries an SDP offer (flash calls too: many trunks and SBCs refuse an
    # INVITE without one). Off: flash INVITEs go without SDP, and an offer in the 2xx is
    # answered in the ACK. Voice calls always offer.
    offer_sdp: bool = True
    # Registration (trunks that authenticate by REGISTER). While not registered the trunk
    # places no calls (they fail over, or end network_error saying why).
    registration: bool = False
    registrar: str | None = None  # "host[:port]"; default the trunk's host and port
    register_expires_s: int = Field(default=3600, ge=1)  # asked for; the registrar decides
    register_retry_min_s: float = Field(default=5.0, gt=0)  # backoff after a failure ...
    register_retry_max_s: float = Field(default=300.0, gt=0)  # ... doubling up to this
    # Health: OPTIONS every options_interval_s (None: no keepalives). down_after
    # consecutive failures (no answer within options_timeout_s, or a 5xx) mark the trunk
    # down, and calls skip it; up_after successes bring it back.
    options_interval_s: float | None = Field(default=None, gt=0)
    options_timeout_s: float = Field(default=5.0, gt=0)
    down_after: int = Field(default=3, ge=1)
    up_after: int = Field(default=1, ge=1)
    # How to reach the trunk (docs/telephony.md, "Transports"). TCP and TLS keep one
    # connection per resolved target and reopen it when lost.
    transport: Literal["udp", "tcp", "tls"] = "udp"
    # RFC 3263: a host name with no port given is looked up as NAPTR, then SRV
    # (_sip._udp, _sip._tcp, _sips._tcp), then A; with a port (or an IP) as A only. Set
    # when the table is read: true exactly when ``port`` was left out and ``host`` is a name.
    srv: bool = False
    # TLS: the server's certificate is verified against the system CAs (or ``tls_ca_file``)
    # and the name ``tls_server_name`` (default: ``host``), which is also sent as SNI.
    tls_verify: bool = True
    tls_ca_file: str | None = None
    tls_server_name: str | None = None
    tls_cert_file: str | None = None  # client certificate, for trunks that ask for one
    tls_key_file: str | None = None
    # "sdes": media is SRTP (RTP/SAVP, AES_CM_128_HMAC_SHA1_80, the key in a=crypto; use
    # with transport = "tls", as SDES keys are only as secret as the signalling). A voice
    # call whose answer does not take SRTP is ended with BYE (outcome rejected, 488).
    srtp: Literal["off", "sdes"] = "off"

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "port" not in data:
            data = dict(data)
            data["port"] = 5061 if data.get("transport") == "tls" else 5060
            data.setdefault("srv", not _is_ip(str(data.get("host", ""))))
        return data

    @model_validator(mode="after")
    def _tls_pair(self) -> TrunkConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(f"trunk {self.name}: set both tls_cert_file and tls_key_file")
        return self

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        return [_digits(p) for p in v]

    @property
    def domain(self) -> str:
        return self.from_domain or self.host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class CallerIdPool(_Model):
    """Numbers we own that flash calls come from: the last four digits are the code.

    ``prefixes``: each prefix followed by any four digits is ours (a block of 10,000).
    ``ranges``: "first-last" inclusive blocks, e.g. "79005554000-79005554999".
    ``numbers``: an explicit list.
    """

    prefixes: list[str] = Field(default_factory=list)
    ranges: list[str] = Field(default_factory=list)
    numbers: list[str] = Field(default_factory=list)

    @field_validator("prefixes", "numbers")
    @classmethod
    def _nums(cls, v: list[str]) -> list[str]:
        return [_digits(p) for p in v]

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        out = []
        for r in v:
            first, sep, last = r.partition("-")
            if not sep:
                raise ValueError(f"range {r!r} must look like 'first-last'")
            a, b = _digits(first), _digits(last)
            if len(a) != len(b) or int(a) > int(b):
                raise ValueError(f"range {r!r}: both ends need the same length, first <= last")
            out.append(f"{a}-{b}")
        return out

    @property
    def empty(self) -> bool:
        return not (self.prefixes or self.ranges or self.numbers)


class PrefixHealthConfig(_Model):
    """When a caller-ID prefix stops ringing phones (the terminating operator started
    blocking it), take it out of the pool: ring rate over the last ``window_s`` below
    ``min_ring_rate``, with at least ``min_calls`` flash calls in the window. It comes back
    after ``cooldown_s`` (or when the operator restores it)."""

    enabled: bool = True
    window_s: float = Field(default=600.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    min_ring_rate: float = Field(default=0.2, ge=0, le=1)
    cooldown_s: float = Field(default=1800.0, gt=0)
    max_prefixes: int = Field(default=256, ge=1)  # tracked at once (bounds /metrics labels)
    keep: list[str] = Field(default_factory=list)  # never taken out (the operator's call)

    @field_validator("keep")
    @classmethod
    def _keep(cls, v: list[str]) -> list[str]:
        return [_digits(p) for p in v]


class SipConfig(_Model):
    bind_ip: str = "0.0.0.0"
    local_ip: str = "127.0.0.1"  # written into Via, Contact and SDP
    port: int = 5060
    rtp_ip: str | None = None  # bind address for RTP; default bind_ip
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    socket_buffer: int = 4 * 1024 * 1024
    t1_s: float = 0.5  # RFC 3261 timers
    t2_s: float = 4.0
    user_agent: str = "opencaller"
    trunks: list[TrunkConfig] = Field(default_factory=list)
    caller_ids: CallerIdPool = Field(default_factory=CallerIdPool)
    voice_caller_id: str | None = None  # voice calls; default: a pool number for the code
    voice_repeats: int = 2
    voice_law: Literal["ulaw", "alaw"] = "ulaw"  # preferred codec (offer order)
    prompt_cache_dir: str | None = None
    inbound_numbers: list[str] = Field(default_factory=list)  # "call us" numbers we own
    inbound_reject_code: int = 603
    # An INVITE given up on (no answer by the progress timeout) is kept in the background
    # this long at most, to CANCEL a late 18x or ACK + BYE a late 2xx; default 2 x 64 x T1
    # (Timer B for the answer, then one more transaction to end the call).
    abandoned_leg_max_s: float | None = Field(default=None, gt=0)
    # NAT: the address the far end reaches us at, when it is not local_ip (we are behind
    # NAT). Used in Via sent-by, Contact and SDP c=/o=; default local_ip and our SIP port.
    public_ip: str | None = None
    public_port: int | None = Field(default=None, ge=1, le=65535)
    # Voice: send RTP to where the far end's RTP comes from, once it arrives (RFC 4961),
    # rather than to the SDP answer's address, which a NAT may have made unreachable.
    symmetric_rtp: bool = True
    caller_id_health: PrefixHealthConfig = Field(default_factory=PrefixHealthConfig)
    # DNS servers for trunk host names, "ip" or "ip:port" (empty: the system's resolv.conf).
    dns_nameservers: list[str] = Field(default_factory=list)
    dns_timeout_s: float = Field(default=3.0, gt=0)
    # Opening a TCP/TLS connection to a trunk takes at most this long; then the call fails
    # over to the next target or trunk.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # A trunk address that did not answer (silence, a refused connection, 5xx) is tried
    # after the others for this long, so a dead SRV primary does not delay every call.
    target_down_s: float = Field(default=30.0, ge=0)
    # Streams we accept (the far end sends in-dialog requests to our Contact): TCP on
    # ``port`` whenever a trunk uses TCP; TLS on ``tls_port`` when a certificate is set.
    tls_port: int = 5061
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @field_validator("voice_caller_id")
    @classmethod
    def _vcid(cls, v: str | None) -> str | None:
        return None if v is None else _digits(v)

    @field_validator("dns_nameservers")
    @classmethod
    def _dns(cls, v: list[str]) -> list[str]:
        for text in v:
            host, _, port = text.strip().rpartition(":")
            if _is_ip(text.strip()) or (port.isdigit() and _is_ip(host)):
                continue
            raise ValueError(f"DNS server {text!r} must be an IP address, optionally ip:port")
        return v

    @field_validator("inbound_numbers")
    @classmethod
    def _inb(cls, v: list[str]) -> list[str]:
        return [_digits(p) for p in v]

    @model_validator(mode="after")
    def _check(self) -> SipConfig:
        names = [t.name for t in self.trunks]
        if len(names) != len(set(names)):
            raise ValueError("trunk names must be unique")
        if self.rtp_port_min > self.rtp_port_max:
            raise ValueError("rtp_port_min > rtp_port_max")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file")
        return self


def parse_config(raw: dict[str, Any] | SipConfig) -> SipConfig:
    return raw if isinstance(raw, SipConfig) else SipConfig.model_validate(raw)
