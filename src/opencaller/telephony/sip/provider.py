"""``SipProvider``: the Provider interface over one or more SIP trunks."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from opencaller.telephony.audio import ESPEAK, PHRASES, Law, PromptCache, default_cache
from opencaller.telephony.base import (
    CallEvent,
    CallKind,
    CallReport,
    CallRequest,
    EventSink,
    InboundHandler,
    Outcome,
    ProviderError,
)
from opencaller.telephony.sip import call as calls
from opencaller.telephony.sip.config import SipConfig, TrunkConfig, parse_config
from opencaller.telephony.sip.inbound import InboundServer
from opencaller.telephony.sip.legs import AbandonedLegs
from opencaller.telephony.sip.limits import TrunkLimits
from opencaller.telephony.sip.monitor import TrunkMonitor, TrunkStatus
from opencaller.telephony.sip.outcomes import is_trunk_failure
from opencaller.telephony.sip.pool import CallerIdChooser
from opencaller.telephony.sip.prefix_pool import PrefixStats
from opencaller.telephony.sip.registration import Local
from opencaller.telephony.sip.resolver import MAX_TARGETS, ResolveError, Resolver
from opencaller.telephony.sip.rtp import MediaSink, PortPool, send_paced
from opencaller.telephony.sip.sdp import answer_offer, offer
from opencaller.telephony.sip.srtp import SdesKey
from opencaller.telephony.sip.streams import Target
from opencaller.telephony.sip.targets import TargetHealth
from opencaller.telephony.sip.tls import client_context, server_context, server_name
from opencaller.telephony.sip.transport import Addr, Transport

log = logging.getLogger("opencaller.sip")

PT_LAW: dict[int, Law] = {0: "ulaw", 8: "alaw"}
FLASH_SESSION = "opencaller flash"  # the SDP session name of flash-call offers

# For call deadlines: an upper bound on how long a prompt takes to say (espeak-ng at 130
# words a minute says a digit in well under a second; our pauses are added on top).
PROMPT_INTRO_BOUND_S = 3.0
PROMPT_DIGIT_BOUND_S = 1.5
DEADLINE_MARGIN_S = 5.0


class SipProvider:
    name = "sip"

    def __init__(
        self,
        config: SipConfig,
        *,
        prompts: PromptCache | None = None,
        espeak: str = ESPEAK,
        espeak_timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.pool = CallerIdChooser(config.caller_ids)
        own_cache = config.prompt_cache_dir or espeak != ESPEAK
        self.prompts = prompts or (
            PromptCache(config.prompt_cache_dir, espeak=espeak) if own_cache else default_cache()
        )
        self.espeak_timeout_s = espeak_timeout_s
        self.transport = Transport(self._on_request)
        self.transport.streams.connect_timeout_s = config.connect_timeout_s
        self.resolver = Resolver(config.dns_nameservers, config.dns_timeout_s)
        self._tls: dict[str, ssl.SSLContext] = {}
        self._targets_known: dict[str, int] = {}  # trunk -> how many addresses DNS gave
        self.health = TargetHealth(config.target_down_s)
        self.limits = {t.name: TrunkLimits(t.cps, t.max_in_flight) for t in config.trunks}
        self.rtp_ports = PortPool(config.rtp_port_min, config.rtp_port_max)
        self._addrs: dict[str, Addr] = {}
        self._handler: InboundHandler | None = None
        self._inbound: InboundServer | None = None
        self._ep: calls.Endpoint | None = None
        self._warm: asyncio.Task[None] | None = None
        leg_max = config.abandoned_leg_max_s or 2 * 64 * config.t1_s
        self.legs = AbandonedLegs(leg_max)
        self._flash_media: asyncio.DatagramTransport | None = None
        self._flash_port = 0
        # Registration, keepalives, ring rates (sip/monitor.py); blocked caller-ID prefixes
        # leave the pool.
        self.monitor = TrunkMonitor(config)
        self.pool.exclude = self.monitor.prefixes.blocked

    @property
    def public_ip(self) -> str:
        """Our address in Via, Contact and SDP: ``public_ip`` behind NAT, else ``local_ip``."""
        return self.config.public_ip or self.config.local_ip

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        c = self.config
        loop = asyncio.get_running_loop()
        for t in c.trunks:
            if t.transport == "tls":
                self._tls[t.name] = client_context(t)
            try:
                targets = await self._targets(t)
            except ResolveError as e:
                raise ProviderError(f"trunk {t.name}: cannot resolve {t.host}: {e}") from e
            self._addrs[t.name] = targets[0]
        await self._bind()
        server_tls = server_context(c)
        tls_port = None
        if server_tls is not None:
            tls_port = await self.transport.streams.listen("tls", c.bind_ip, c.tls_port, server_tls)
        # One RTP port for the offers of all flash calls (they never send media).
        sock = self.rtp_ports.bind(c.rtp_ip or c.bind_ip)
        self._flash_port = sock.getsockname()[1]
        media, _ = await loop.create_datagram_endpoint(MediaSink, sock=sock)
        self._flash_media = media
        self._ep = calls.Endpoint(
            transport=self.transport,
            local_ip=self.public_ip,
            local_port=c.public_port or self.transport.local[1],
            t1=c.t1_s,
            t2=c.t2_s,
            user_agent=c.user_agent,
            tls_port=tls_port,
        )
        self._inbound = InboundServer(
            self.transport,
            t1=c.t1_s,
            t2=c.t2_s,
            user_agent=c.user_agent,
            reject_code=c.inbound_reject_code,
            handler=lambda: self._handler,
        )
        self._warm = asyncio.create_task(self._warm_prompts())
        learn = c.public_ip is None
        local = Local(self.public_ip, self._ep.local_port, c.t1_s, c.t2_s, c.user_agent, learn)
        await self.monitor.start(self.transport, local, self._addrs)

    async def _bind(self) -> None:
        """The UDP socket, and a TCP listener on the same port number when a trunk uses TCP
        (our Contact names one port for both). With ``port = 0`` the number is chosen by the
        system for UDP and may be taken for TCP: then try another."""
        c = self.config
        tcp = any(t.transport == "tcp" for t in c.trunks)
        for attempt in range(10):
            await self.transport.start(c.bind_ip, c.port, c.socket_buffer)
            if not tcp:
                return
            try:
                await self.transport.streams.listen("tcp", c.bind_ip, self.transport.local[1], None)
                return
            except OSError:
                if c.port != 0 or attempt == 9:
                    raise
                self.transport.close()

    async def _targets(self, trunk: TrunkConfig) -> list[Addr]:
        """Where to send the trunk's calls, in order (RFC 3263), as transport-aware targets."""
        found = await self.resolver.targets(trunk)
        self._targets_known[trunk.name] = len(found)
        tls = self._tls.get(trunk.name)
        name = server_name(trunk) if tls is not None else None
        return [Target(ip, port, trunk.transport, name, tls) for ip, port in found]

    async def _on_targets(
        self, trunk: TrunkConfig, attempt: Callable[[TrunkConfig, Addr], Awaitable[CallReport]]
    ) -> CallReport:
        """One attempt on ``trunk``: its resolved addresses in turn while they do not answer
        (no response, a refused connection, 5xx), as RFC 3263 §4.3 asks."""
        try:
            targets = await self._targets(trunk)
        except ResolveError as e:
            return CallReport(
                outcome=Outcome.NETWORK_ERROR,
                reason=f"cannot resolve {trunk.host}: {e}",
                started_at=time.time(),
                ended_at=time.time(),
            )
        targets = self.health.order(targets, _target_key)
        tried: list[tuple[str, CallReport]] = []
        for i, target in enumerate(targets):
            if i > 0:  # another INVITE to the same operator: it counts against its cps
                await self.limits[trunk.name].rate.acquire()
            rep = await attempt(trunk, target)
            tried.append((f"{target[0]}:{target[1]}", rep))
            if rep.outcome == Outcome.NETWORK_ERROR and is_trunk_failure(rep.sip_code):
                self.health.failed(_target_key(target))
                if i < len(targets) - 1:
                    log.warning(
                        "trunk %s at %s:%d: %s; next address", trunk.name, *target, rep.reason
                    )
                    continue
            else:
                self.health.answered(_target_key(target))
            break
        # Several addresses tried: the record lists each, as it does for several trunks.
        return combine_legs(tried)

    async def _warm_prompts(self) -> None:
        for language in PHRASES:
            try:
                await self.prompts.warm(language, self.espeak_timeout_s)
            except Exception:
                log.exception("could not prepare %s voice prompts", language)

    async def close(self) -> None:
        if self._warm is not None:
            self._warm.cancel()
            await asyncio.gather(self._warm, return_exceptions=True)
        if self._inbound is not None:
            await self._inbound.close()
        await self.legs.close()
        await self.monitor.close()  # unregisters: before the transport closes
        if self._flash_media is not None:
            self._flash_media.close()  # closes its socket
            self._flash_media = None
            self.rtp_ports.forget(self._flash_port)
        self.transport.close()

    @property
    def port(self) -> int:
        """The UDP port we listen on (useful when configured as 0)."""
        return self.transport.local[1]

    def trunk_status(self) -> list[TrunkStatus]:
        """Each trunk: usable now or why not (registration, keepalives), and since when."""
        return self.monitor.status()

    def prefix_ring_rates(self) -> dict[str, PrefixStats]:
        """Flash calls per caller-ID prefix in the sliding window: how many, the share that
        rang, whether it is out of the pool (e.g. to prefer prefixes that convert)."""
        return self.monitor.prefixes.ring_rates()

    async def healthy(self) -> bool:
        return self.transport.running and bool(self.config.trunks)

    # --- inbound ----------------------------------------------------------------------------

    def on_inbound(self, handler: InboundHandler) -> None:
        self._handler = handler

    def confirmation_number(self, caller: str) -> str | None:
        nums = self.config.inbound_numbers
        if not nums:
            return None
        # Stable per caller, spread over the pool.
        return nums[zlib.crc32(caller.encode()) % len(nums)]

    def _on_request(self, req: Any, addr: Addr) -> None:
        if self._inbound is not None:
            self._inbound.on_request(req, addr)

    # --- outbound ---------------------------------------------------------------------------

    def routes(self, destination: str) -> list[TrunkConfig]:
        """Trunks for ``destination``: longest matching prefix first, catch-alls last."""
        ranked: list[tuple[int, int, TrunkConfig]] = []
        for i, t in enumerate(self.config.trunks):
            if not t.prefixes:
                ranked.append((0, i, t))
                continue
            best = max((len(p) for p in t.prefixes if destination.startswith(p)), default=-1)
            if best >= 0:
                ranked.append((best, i, t))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return [t for _, _, t in ranked]

    def check(self, request: CallRequest) -> str | None:
        if not request.destination.isdigit():
            return "the destination must be digits"
        if not self.routes(request.destination):
            return f"no SIP trunk routes {request.destination}"
        if request.kind in (CallKind.FLASH, CallKind.MIX):
            why = self.pool.why_not_now(request.code)
            if why is not None:
                return why
        if request.kind in (CallKind.VOICE, CallKind.MIX):
            if request.language not in PHRASES:
                return f"no voice prompts for language {request.language!r}"
            if not request.code.isdigit():
                return "the voice code must be digits"
            if self._voice_caller(request.code) is None:
                return "no caller ID for voice calls: set sip.voice_caller_id or a pool"
        return None

    def _voice_caller(self, code: str) -> str | None:
        if self.config.voice_caller_id:
            return self.config.voice_caller_id
        if len(code) == 4 and self.pool.why_not(code) is None:
            return self.pool.pick(code)
        nums = self.config.caller_ids.numbers
        return nums[0] if nums else None

    # --- deadlines --------------------------------------------------------------------------

    def _attempt_s(self, trunk: TrunkConfig, kind: CallKind, code: str) -> float:
        """The longest one call on ``trunk`` can take when every timer of ours runs out."""
        if trunk.max_call_s is not None:
            return trunk.max_call_s
        c = self.config
        # Waiting for a slot of the trunk's CPS pacing, at worst a full queue of calls ahead.
        pacing = trunk.max_in_flight * self.limits[trunk.name].rate.spacing_s
        # CANCEL or BYE, and the INVITE's final response: each a transaction (64 * T1).
        teardown = 2 * 64 * c.t1_s
        if kind == CallKind.FLASH:
            return pacing + trunk.progress_timeout_s + trunk.ring_hold_s + teardown
        ringing = max(trunk.progress_timeout_s, trunk.answer_timeout_s)
        prompt = c.voice_repeats * (PROMPT_INTRO_BOUND_S + PROMPT_DIGIT_BOUND_S * len(code))
        return pacing + ringing + prompt + teardown

    def _kind_s(self, destination: str, kind: CallKind, code: str) -> float:
        total = 0.0
        for trunk in self.routes(destination):
            # Each of its addresses may be tried in turn (a silent one takes a full attempt).
            tries = min(self._targets_known.get(trunk.name, 1), MAX_TARGETS)
            total += tries * self._attempt_s(trunk, kind, code)
            if not trunk.failover:
                break  # the next trunk is never tried
        return total

    def deadline_s(self, request: CallRequest) -> float:
        kinds = [CallKind.FLASH, CallKind.VOICE] if request.kind == CallKind.MIX else [request.kind]
        total = sum(self._kind_s(request.destination, k, request.code) for k in kinds)
        if CallKind.VOICE in kinds and not self.prompts.ready(request.language):
            total += self.espeak_timeout_s  # the prompt needs synthesising first
        return total + DEADLINE_MARGIN_S

    async def place_call(self, request: CallRequest, events: EventSink | None = None) -> CallReport:
        why = self.check(request)
        if why is not None:
            raise ProviderError(why)
        if self._ep is None:
            raise ProviderError("the SIP provider is not started")

        def notifier(kind: CallKind) -> calls.Notify:
            async def notify(state: str, code: int | None) -> None:
                if events is None:
                    return
                try:
                    await events(CallEvent(request.ucaller_id, state, code, time.time(), kind))
                except Exception:
                    log.exception("call event sink failed")

            return notify

        if request.kind == CallKind.FLASH:
            rep = await self._flash(request, notifier(CallKind.FLASH))
            return replace(rep, kinds_tried=(CallKind.FLASH,))
        if request.kind == CallKind.VOICE:
            rep = await self._voice(request, notifier(CallKind.VOICE))
            return replace(rep, kinds_tried=(CallKind.VOICE,))
        rep = await self._flash(request, notifier(CallKind.FLASH))
        if rep.outcome.reached:
            return replace(rep, kinds_tried=(CallKind.FLASH,))
        log.info("flash to %s: %s; trying voice", request.destination, rep.outcome)
        rep = await self._voice(request, notifier(CallKind.VOICE))
        return replace(rep, kinds_tried=(CallKind.FLASH, CallKind.VOICE))

    def _usable_routes(self, destination: str) -> tuple[list[TrunkConfig], list[str]]:
        """The routes that may take a call now, and why the others may not (a trunk not
        registered or down is skipped before a call waits on it)."""
        usable, skipped = [], []
        for trunk in self.routes(destination):
            why = self.monitor.why_not(trunk)
            if why is None:
                usable.append(trunk)
            else:
                skipped.append(f"{trunk.name}: {why}")
        if skipped:
            log.warning("call to %s skips %s", destination, "; ".join(skipped))
        return usable, skipped

    async def _over_trunks(
        self,
        destination: str,
        attempt: Callable[[TrunkConfig, Addr], Awaitable[CallReport]],
        *,
        flash: bool = False,
    ) -> CallReport:
        trunks, skipped = self._usable_routes(destination)
        if not trunks:
            return _no_trunk(skipped)
        legs: list[tuple[str, CallReport]] = []
        for i, trunk in enumerate(trunks):
            limits = self.limits[trunk.name]
            async with limits.in_flight:
                await limits.rate.acquire()
                rep = await self._on_targets(trunk, attempt)
            self.monitor.record(trunk.name, rep, flash=flash)
            legs.append((trunk.name, rep))
            last = i == len(trunks) - 1
            if (
                rep.outcome == Outcome.NETWORK_ERROR
                and trunk.failover
                and is_trunk_failure(rep.sip_code)
                and not last
            ):
                log.warning("trunk %s failed (%s); trying the next", trunk.name, rep.reason)
                continue
            break
        return combine_legs(legs)

    async def _flash(self, request: CallRequest, notify: calls.Notify) -> CallReport:
        caller = self.pool.pick(request.code)
        if caller is None:
            raise ProviderError(self.pool.why_not_now(request.code) or "no caller ID")
        ep = self._ep
        assert ep is not None

        ip, port = self.public_ip, self._flash_port

        def late_answer(body: bytes) -> bytes:
            return answer_offer(body, ip, port, [0, 8], session_name=FLASH_SESSION)

        async def attempt(trunk: TrunkConfig, addr: Addr) -> CallReport:
            # An SRTP trunk refuses a plain offer; the key is never used (no media is sent).
            crypto = SdesKey.new().attribute if trunk.srtp == "sdes" else None
            sdp = (
                offer(ip, port, [0, 8], session_name=FLASH_SESSION, crypto=crypto)
                if trunk.offer_sdp
                else None
            )
            call = calls.OutboundCall(
                ep, trunk, addr, request.destination, caller, sdp=sdp, late_answer=late_answer
            )
            call.on_leave = self.legs.adopt
            return await calls.flash(call, caller, notify)

        return await self._over_trunks(request.destination, attempt, flash=True)

    async def _voice(self, request: CallRequest, notify: calls.Notify) -> CallReport:
        caller = self._voice_caller(request.code)
        if caller is None:
            raise ProviderError("no caller ID for voice calls")
        ep = self._ep
        assert ep is not None
        c = self.config
        try:
            await self.prompts.warm(request.language, self.espeak_timeout_s)
        except TimeoutError:
            # Nothing went on the wire: the trunk was never asked, the phone never rang.
            return CallReport(
                outcome=Outcome.NETWORK_ERROR,
                caller_id=caller,
                reason=f"voice prompt synthesis took longer than {self.espeak_timeout_s:g} s",
                started_at=time.time(),
                ended_at=time.time(),
            )
        prompts: dict[int, bytes] = {
            pt: self.prompts.prompt(
                request.code, request.language, law=law, repeats=c.voice_repeats
            )
            for pt, law in PT_LAW.items()
        }
        offered = [0, 8] if c.voice_law == "ulaw" else [8, 0]

        async def attempt(trunk: TrunkConfig, addr: Addr) -> CallReport:
            sock = self.rtp_ports.bind(c.rtp_ip or c.bind_ip)
            try:
                sdes = SdesKey.new() if trunk.srtp == "sdes" else None
                crypto = sdes.attribute if sdes is not None else None
                sdp = offer(self.public_ip, sock.getsockname()[1], offered, crypto=crypto)
                call = calls.OutboundCall(ep, trunk, addr, request.destination, caller, sdp=sdp)
                call.on_leave = self.legs.adopt
                call.sdes = sdes

                async def play(dest: Addr, pt: int) -> None:
                    protect = sdes.protector() if sdes is not None else None
                    symmetric = c.symmetric_rtp
                    await send_paced(sock, dest, prompts[pt], pt, protect, symmetric=symmetric)

                return await calls.voice(call, caller, notify, play, offered)
            finally:
                self.rtp_ports.release(sock)

        return await self._over_trunks(request.destination, attempt)


def _no_trunk(skipped: list[str]) -> CallReport:
    """No trunk may take the call now: nothing went on the wire."""
    now = time.time()
    return CallReport(
        outcome=Outcome.NETWORK_ERROR,
        caller_id=None,
        reason="no usable trunk: " + "; ".join(skipped),
        started_at=now,
        ended_at=now,
    )


def _target_key(target: Addr) -> tuple[str, str, int, str | None]:
    return target.key if isinstance(target, Target) else ("udp", target[0], target[1], None)


def combine_legs(legs: list[tuple[str, CallReport]]) -> CallReport:
    """One report for a call tried on several trunks (failover).

    The outcome is the last leg's: it decided. Its SIP code, reason and Q.850 cause are
    kept when it heard one; when it heard nothing (silence), the latest earlier leg that
    did answer gives them (e.g. 503 on the first trunk, silence on the second keeps 503).
    ``reason`` lists every leg as "trunk: reason", in order.
    """
    last = legs[-1][1]
    if len(legs) == 1:
        return last
    chosen = last
    if last.sip_code is None:
        chosen = next((r for _, r in reversed(legs) if r.sip_code is not None), last)
    return replace(
        last,
        sip_code=chosen.sip_code,
        q850_cause=chosen.q850_cause,
        reason="; ".join(f"{n}: {r.reason}" for n, r in legs),
        started_at=legs[0][1].started_at,
    )


def from_settings(
    sip: dict[str, Any] | SipConfig, *, espeak: str = ESPEAK, espeak_timeout_s: float = 10.0
) -> SipProvider:
    """Build the provider from ``Settings.sip`` (the ``[sip]`` TOML table); ``espeak`` and
    ``espeak_timeout_s`` are the top-level settings of the same names."""
    return SipProvider(parse_config(sip), espeak=espeak, espeak_timeout_s=espeak_timeout_s)
