"""The outbound call (UAC) state machine: INVITE with digest auth, CANCEL, ACK, BYE.

``OutboundCall`` keeps the dialog state of one call; ``flash`` and ``voice`` below drive it
and turn what the far end said into a :class:`CallReport`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sipmessage import Request, Response

from opencaller.telephony.base import CUT_GRACE_S, CallReport, Outcome
from opencaller.telephony.sip import messages as m
from opencaller.telephony.sip.auth import authorization, parse_challenge
from opencaller.telephony.sip.config import NumberFormat, TrunkConfig
from opencaller.telephony.sip.outcomes import outcome_for, q850_cause
from opencaller.telephony.sip.sdp import Answer, parse_answer
from opencaller.telephony.sip.srtp import SdesKey
from opencaller.telephony.sip.transaction import ClientTransaction
from opencaller.telephony.sip.transport import Addr, Transport, proto_of

log = logging.getLogger("opencaller.sip")

Notify = Callable[[str, int | None], Awaitable[None]]

DIALOG_LINGER_S = 5.0  # keep answering retransmitted 2xx / BYE a little after the end


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a call needs to know about our side."""

    transport: Transport
    local_ip: str
    local_port: int
    t1: float
    t2: float
    user_agent: str
    tls_port: int | None = None  # our TLS listener (Via/Contact of TLS calls); None: none

    def port_for(self, proto: str) -> int:
        """The port our Via and Contact name for ``proto`` (TCP listens on the UDP port)."""
        if proto == "tls" and self.tls_port is not None:
            return self.tls_port
        return self.local_port


def number_uri(number: str, fmt: NumberFormat, domain: str, *, allow_tel: bool = True) -> str:
    user = ("+" if fmt.plus else "") + number
    if fmt.tel_uri and allow_tel:
        return f"tel:{user}"
    return f"sip:{user}@{domain}" + (";user=phone" if fmt.user_phone else "")


class OutboundCall:
    def __init__(
        self,
        ep: Endpoint,
        trunk: TrunkConfig,
        dest: Addr,
        callee: str,
        caller: str,
        *,
        sdp: bytes | None = None,
        late_answer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.ep, self.trunk, self.dest = ep, trunk, dest
        self.call_id = m.new_call_id(ep.local_ip)
        self.from_tag = m.new_tag()
        callee_user = ("+" if trunk.callee.plus else "") + callee
        phone = ";user=phone" if trunk.callee.user_phone else ""
        self.proto = proto_of(dest)
        # A stream transport is named in the URIs (RFC 3261 §19.1.1; TLS with sip: and
        # ;transport=tls rather than sips:, which would ask every hop to the phone for TLS).
        tparam = "" if self.proto == "udp" else f";transport={self.proto}"
        # With SRV the port belongs to the target DNS chose, not to the domain in the URI.
        hostport = trunk.host if trunk.srv else f"{trunk.host}:{trunk.port}"
        self.ruri = f"sip:{callee_user}@{hostport}{phone}{tparam}"
        self.to_hdr = f"<sip:{callee_user}@{trunk.host}{phone}>"
        # tel_uri applies to the asserted identity only: From stays a sip: URI, which every
        # trunk takes (some refuse a tel: From).
        from_uri = number_uri(caller, trunk.caller_id, trunk.domain, allow_tel=False)
        cid = number_uri(caller, trunk.caller_id, trunk.domain)
        self.from_hdr = f"<{from_uri}>;tag={self.from_tag}"
        self.identity: list[tuple[str, str]] = [("P-Asserted-Identity", f"<{cid}>")]
        if trunk.remote_party_id:
            self.identity.append(("Remote-Party-ID", f"<{cid}>;party=calling;screen=yes"))
        self.contact = f"<sip:{caller}@{ep.local_ip}:{ep.port_for(self.proto)}{tparam}>"
        self.sdp = sdp
        # Our SDP answer to an offer that comes in a 2xx when the INVITE had none (RFC 3264
        # §4, "late offer"); it goes in the ACK.
        self.late_answer = late_answer
        self.sdes: SdesKey | None = None  # our SRTP key when the offer is RTP/SAVP
        self.acked_body = b""
        # Set by whoever keeps an INVITE we gave up on alive in the background (failover);
        # while ``kept``, that keeper closes the call, not the procedure that gave up.
        self.on_leave: Callable[[OutboundCall], None] | None = None
        self.kept = False
        self.cseq = 0
        self.invite_tx: ClientTransaction | None = None
        self.cancel_tx: ClientTransaction | None = None
        self._challenged: set[int] = set()
        self.remote_tag: str | None = None
        self.remote_target: str | None = None
        self.route_set: list[str] = []
        self._ack: bytes | None = None
        self._to_remote = self.to_hdr
        self.remote_bye = asyncio.Event()
        self.bye_sent = False
        ep.transport.dialogs[self.call_id] = self

    # --- sending ----------------------------------------------------------------------------

    def _via(self, branch: str) -> str:
        sent_by = f"{self.ep.local_ip}:{self.ep.port_for(self.proto)}"
        if self.proto == "udp":
            return f"SIP/2.0/UDP {sent_by};branch={branch};rport"
        # alias (RFC 5923): the far end may send its requests back over our connection.
        return f"SIP/2.0/{self.proto.upper()} {sent_by};branch={branch};rport;alias"

    def _tx(self, req: Request, branch: str) -> ClientTransaction:
        tx = ClientTransaction(
            self.ep.transport, req, branch, self.dest, t1=self.ep.t1, t2=self.ep.t2
        )
        tx.start()
        return tx

    def send_invite(self, auth: list[tuple[str, str]] | None = None) -> None:
        self.cseq += 1
        branch = m.new_branch()
        req = m.request(
            "INVITE",
            self.ruri,
            via=self._via(branch),
            from_=self.from_hdr,
            to=self.to_hdr,
            call_id=self.call_id,
            cseq=self.cseq,
            headers=[
                ("Contact", self.contact),
                *self.identity,
                ("Allow", m.ALLOW),
                *(auth or []),
            ],
            body=self.sdp or b"",
            content_type="application/sdp" if self.sdp else None,
            user_agent=self.ep.user_agent,
        )
        self.invite_tx = self._tx(req, branch)

    def _credentials(self, resp: Response, method: str, uri: str) -> list[tuple[str, str]] | None:
        """Answer a 401/407 once per challenge kind (again only when the nonce went stale)."""
        t = self.trunk
        if t.password is None or not (t.auth_username or t.username):
            return None
        name = "WWW-Authenticate" if resp.code == 401 else "Proxy-Authenticate"
        out = []
        for value in resp.headers.getlist(name):
            ch = parse_challenge(value)
            if ch is None or (t.realm is not None and ch.realm != t.realm):
                continue
            if resp.code in self._challenged and not ch.stale:
                return None  # our credentials were refused
            try:
                cred = authorization(
                    ch,
                    method=method,
                    uri=uri,
                    username=t.auth_username or t.username or "",
                    password=t.password,
                )
            except ValueError:
                continue
            out.append(("Authorization" if resp.code == 401 else "Proxy-Authorization", cred))
            break
        if not out:
            return None
        self._challenged.add(resp.code)
        return out

    async def response(self, deadline: float) -> Response | None:
        """Next response to our INVITE, doing digest auth on the way. ``None``: Timer B.
        Raises TimeoutError at ``deadline`` (monotonic)."""
        while True:
            assert self.invite_tx is not None
            resp = await self.invite_tx.response(deadline - time.monotonic())
            if resp is not None and resp.code in (401, 407) and self.cancel_tx is None:
                auth = self._credentials(resp, "INVITE", self.ruri)
                if auth is not None:
                    self.send_invite(auth)
                    continue
            return resp

    def cancel(self) -> None:
        """CANCEL the INVITE (only after a provisional response, §9.1)."""
        tx = self.invite_tx
        if tx is None or self.cancel_tx is not None or tx.final is not None:
            return
        h = tx.req.headers
        req = Request("CANCEL", tx.req.uri)
        req.headers.add("Via", h.getlist("Via")[0])
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", h["From"])
        req.headers.add("To", h["To"])
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{self.cseq} CANCEL")
        for route in h.getlist("Route"):
            req.headers.add("Route", route)
        req.headers.add("Content-Length", "0")
        self.cancel_tx = self._tx(req, tx.branch)

    def ack_2xx(self, resp: Response) -> None:
        self.remote_tag = m.tag_of(resp.headers.get("To"))
        contacts = resp.contact
        self.remote_target = str(contacts[0].uri) if contacts else self.ruri
        self.route_set = [str(a) for a in reversed(resp.record_route)]
        self._to_remote = resp.headers["To"]
        body = b""
        if self.sdp is None and self.late_answer is not None and _has_sdp(resp):
            body = self.late_answer(resp.body)
        self.acked_body = body
        ack = m.request(
            "ACK",
            self.remote_target,
            via=self._via(m.new_branch()),
            from_=self.from_hdr,
            to=self._to_remote,
            call_id=self.call_id,
            cseq=self.cseq,
            headers=[("Route", r) for r in self.route_set],
            body=body,
            content_type="application/sdp" if body else None,
        )
        self._ack = bytes(ack)
        self.ep.transport.send(self._ack, self.dest)

    async def bye(self) -> int | None:
        """End a confirmed dialog; returns the BYE's final status (None: no answer)."""
        auth: list[tuple[str, str]] = []
        for _ in range(2):
            self.cseq += 1
            branch = m.new_branch()
            assert self.remote_target is not None
            req = m.request(
                "BYE",
                self.remote_target,
                via=self._via(branch),
                from_=self.from_hdr,
                to=self._to_remote,
                call_id=self.call_id,
                cseq=self.cseq,
                headers=[*(("Route", r) for r in self.route_set), *auth],
                user_agent=self.ep.user_agent,
            )
            tx = self._tx(req, branch)
            self.bye_sent = True
            final = await _final(tx)
            if final is None:
                return None
            if final.code in (401, 407):
                creds = self._credentials(final, "BYE", self.remote_target)
                if creds is not None:
                    auth = creds
                    continue
            return final.code
        return None

    async def finish_invite(self) -> Response | None:
        """After CANCEL: wait for the INVITE's final answer (487, or a 200 that raced us)."""
        deadline = time.monotonic() + 64 * self.ep.t1
        while True:
            try:
                resp = await self.response(deadline)
            except TimeoutError:
                return None
            if resp is None or resp.code >= 200:
                return resp

    # --- receiving (dialog) -----------------------------------------------------------------

    def on_response(self, resp: Response, addr: Addr) -> None:
        _, method = m.cseq_of(resp)
        if method == "INVITE" and 200 <= resp.code < 300 and self._ack is not None:
            self.ep.transport.send(self._ack, self.dest)  # the far end did not get our ACK

    def on_request(self, req: Request, addr: Addr) -> None:
        if req.method == "ACK":
            return
        code = 200 if req.method in ("BYE", "OPTIONS") else 501
        self.ep.transport.send(bytes(m.response(req, code)), addr)
        if req.method == "BYE":
            self.remote_bye.set()

    @property
    def pending(self) -> bool:
        """The INVITE is still waiting for an answer (its transaction is alive)."""
        tx = self.invite_tx
        return tx is not None and tx.final is None and not tx.closed

    def close(self) -> None:
        if self.kept:
            return  # left running in the background: its keeper closes it

        def forget() -> None:
            if self.ep.transport.dialogs.get(self.call_id) is self:
                del self.ep.transport.dialogs[self.call_id]

        asyncio.get_running_loop().call_later(DIALOG_LINGER_S, forget)


def _has_sdp(resp: Response) -> bool:
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return ctype == "application/sdp" and bool(resp.body.strip())


async def _final(tx: ClientTransaction) -> Response | None:
    while True:
        resp = await tx.response(None)
        if resp is None or resp.code >= 200:
            return resp


# --- call procedures ------------------------------------------------------------------------


@dataclass(slots=True)
class _Progress:
    started: float
    progress_at: float | None = None
    progress_code: int | None = None
    any_response: bool = False


def _reason(resp: Response) -> str:
    return f"{resp.code} {resp.phrase}"


def _failure(resp: Response, caller: str, p: _Progress) -> CallReport:
    q850 = q850_cause(resp.headers.getlist("Reason"))
    return CallReport(
        outcome=outcome_for(resp.code, q850),
        caller_id=caller,
        sip_code=resp.code,
        reason=_reason(resp),
        q850_cause=q850,
        started_at=p.started,
        progress_at=p.progress_at,
        ended_at=time.time(),
    )


def _report(
    outcome: Outcome,
    caller: str,
    p: _Progress,
    code: int | None,
    reason: str,
    q850: int | None = None,
) -> CallReport:
    return CallReport(
        outcome=outcome,
        caller_id=caller,
        sip_code=code,
        reason=reason,
        q850_cause=q850,
        started_at=p.started,
        progress_at=p.progress_at,
        ended_at=time.time(),
    )


async def _hang_up_early(call: OutboundCall) -> Response | None:
    """CANCEL and collect the INVITE's end; a 200 that crossed the CANCEL gets ACK + BYE."""
    call.cancel()
    final = await call.finish_invite()
    if final is not None and 200 <= final.code < 300:
        call.ack_2xx(final)
        await call.bye()
    return final


async def end_on_wire(call: OutboundCall, grace_s: float = CUT_GRACE_S) -> None:
    """End a call whose task was cancelled (deadline, shutdown), within ``grace_s``.

    An established dialog gets BYE. An INVITE still pending gets CANCEL, which needs a
    provisional response first (RFC 3261 §9.1): wait for one, then for the INVITE's final
    response (487 is ACKed by the transaction; a 2xx that crossed the CANCEL gets ACK + BYE).
    With no answer at all the INVITE is abandoned, so nothing keeps retransmitting.
    """
    deadline = time.monotonic() + grace_s
    tx = call.invite_tx
    try:
        if call.remote_target is None and tx is not None:
            while tx.final is None and tx.provisional is None:
                if await tx.response(deadline - time.monotonic()) is None:
                    return  # Timer B: the trunk never answered
            if tx.final is None:
                call.cancel()
            final = tx.final
            while final is None:
                if await tx.response(deadline - time.monotonic()) is None:
                    return
                final = tx.final
            if 200 <= final.code < 300:
                call.ack_2xx(final)
        if call.remote_target is not None and not call.bye_sent and not call.remote_bye.is_set():
            await asyncio.wait_for(call.bye(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        log.warning("call %s: the far end did not confirm the end in time", call.call_id)
    finally:
        if tx is not None and tx.final is None:
            # Given up: stop retransmitting the INVITE and our CANCEL.
            tx.abandon()
            if call.cancel_tx is not None:
                call.cancel_tx.abandon()


def _no_response(call: OutboundCall, caller: str, p: _Progress) -> CallReport:
    """The trunk said nothing. An INVITE still alive is left to ``call.on_leave`` (which
    CANCELs a late provisional and ACKs + BYEs a late 2xx); without a keeper it is dropped."""
    if call.pending:
        if call.on_leave is not None:
            call.kept = True
            call.on_leave(call)
        elif call.invite_tx is not None:
            call.invite_tx.abandon()
    tx = call.invite_tx
    if tx is not None and tx.error is not None:  # TCP/TLS: no connection (refused, bad cert)
        return _report(
            Outcome.NETWORK_ERROR, caller, p, None, f"cannot reach the trunk: {tx.error}"
        )
    return _report(Outcome.NETWORK_ERROR, caller, p, None, "no response from the trunk")


async def flash(call: OutboundCall, caller: str, notify: Notify) -> CallReport:
    """Ring from ``caller`` and hang up once the handset is alerted (plus the ring hold)."""
    p = _Progress(started=time.time())
    progress_deadline = time.monotonic() + call.trunk.progress_timeout_s
    hold_until: float | None = None
    call.send_invite()
    try:
        while True:
            try:
                resp = await call.response(hold_until or progress_deadline)
            except TimeoutError:
                return await _flash_timed_out(call, caller, p, rang=hold_until is not None)
            if resp is None:
                return _no_response(call, caller, p)
            p.any_response = True
            if resp.code < 200:
                hold_until = await _flash_provisional(call.trunk, resp, p, notify) or hold_until
                continue
            return await _flash_final(call, resp, caller, p, notify)
    except asyncio.CancelledError:
        await end_on_wire(call)
        raise
    finally:
        call.close()


async def _flash_timed_out(
    call: OutboundCall, caller: str, p: _Progress, *, rang: bool
) -> CallReport:
    """The wait ended: after the ring hold the flash call is done; before any ringing it is
    not going to ring."""
    if rang:  # rang long enough: drop it
        final = await _hang_up_early(call)
        reason = f"{p.progress_code} then CANCEL"
        if final is not None and final.code != 487:
            reason += f", {_reason(final)}"
        return _report(Outcome.DELIVERED, caller, p, p.progress_code, reason)
    if not p.any_response:
        return _no_response(call, caller, p)
    await _hang_up_early(call)
    return _report(Outcome.NO_PROGRESS, caller, p, None, "no ringing before the progress timeout")


async def _flash_provisional(
    trunk: TrunkConfig, resp: Response, p: _Progress, notify: Notify
) -> float | None:
    """A 1xx: on the first alerting one, when to hang up (after the ring hold); else None."""
    alerting = resp.code == 180 or (resp.code == 183 and trunk.hold_on_183)
    if alerting and p.progress_at is None:
        p.progress_at, p.progress_code = time.time(), resp.code
        await notify("ringing", resp.code)
        return time.monotonic() + max(trunk.ring_hold_s, 0.0)
    if resp.code == 100:
        await notify("trying", 100)
    return None


async def _flash_final(
    call: OutboundCall, resp: Response, caller: str, p: _Progress, notify: Notify
) -> CallReport:
    """A final answer before the flash call was dropped."""
    if resp.code < 300:  # answered before we hung up: still reached
        call.ack_2xx(resp)
        await notify("answered", resp.code)
        await call.bye()
        return _report(Outcome.ANSWERED, caller, p, resp.code, _reason(resp))
    if p.progress_at is not None:
        # The phone was alerted; a decline or timeout after that still shows the call.
        q850 = q850_cause(resp.headers.getlist("Reason"))
        reason = f"{p.progress_code} then {_reason(resp)}"
        return _report(Outcome.DELIVERED, caller, p, p.progress_code, reason, q850)
    return _failure(resp, caller, p)


def _media_of(call: OutboundCall, body: bytes, offered: list[int]) -> tuple[Answer | None, str]:
    """Where to send the prompt, from the answer; or why the answer cannot be used."""
    media = parse_answer(body, offered)
    if media is None:
        return None, "no usable audio in the answer"
    if call.sdes is not None and not call.sdes.accepted_by(list(media.crypto)):
        return None, "the answer did not take SRTP"
    return media, ""


async def voice(
    call: OutboundCall,
    caller: str,
    notify: Notify,
    play: Callable[[Addr, int], Coroutine[Any, Any, None]],
    offered: list[int],
) -> CallReport:
    """Call, wait for the answer, ``play`` the prompt to the answered media address, BYE."""
    trunk = call.trunk
    p = _Progress(started=time.time())
    t0 = time.monotonic()
    progress_deadline = t0 + trunk.progress_timeout_s
    answer_deadline = t0 + max(trunk.answer_timeout_s, trunk.progress_timeout_s)
    call.send_invite()
    try:
        while True:
            deadline = answer_deadline if p.progress_at is not None else progress_deadline
            try:
                resp = await call.response(deadline)
            except TimeoutError:
                if not p.any_response:
                    return _no_response(call, caller, p)
                ringing = p.progress_at is not None
                final = await _hang_up_early(call)
                if ringing:
                    # The ringing is what the far end last said; a final other than the 487
                    # of our CANCEL (it crossed it) says more.
                    code, q850 = p.progress_code, None
                    reason = f"{p.progress_code} then not answered in time"
                    if final is not None and final.code >= 300 and final.code != 487:
                        code, q850 = final.code, q850_cause(final.headers.getlist("Reason"))
                        reason += f", {_reason(final)}"
                    return _report(Outcome.NO_ANSWER, caller, p, code, reason, q850)
                del final
                return _report(
                    Outcome.NO_PROGRESS, caller, p, None, "no ringing before the progress timeout"
                )
            if resp is None:
                return _no_response(call, caller, p)
            p.any_response = True
            if resp.code < 200:
                if resp.code in (180, 183) and p.progress_at is None:
                    p.progress_at, p.progress_code = time.time(), resp.code
                    await notify("ringing", resp.code)
                elif resp.code == 100 and p.progress_at is None:
                    await notify("trying", 100)
                continue
            if resp.code >= 300:
                return _failure(resp, caller, p)
            call.ack_2xx(resp)
            await notify("answered", resp.code)
            media, why = _media_of(call, resp.body, offered)
            if media is None:
                await call.bye()
                return _report(Outcome.REJECTED, caller, p, 488, why)
            player = asyncio.create_task(play((media.ip, media.port), media.payload_type))
            hangup = asyncio.create_task(call.remote_bye.wait())
            try:
                await asyncio.wait({player, hangup}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Also when this call is cancelled: the voice stops before the BYE goes out.
                for t in (player, hangup):
                    t.cancel()
                await asyncio.gather(player, hangup, return_exceptions=True)
            if not call.remote_bye.is_set():
                await call.bye()
            return _report(Outcome.ANSWERED, caller, p, resp.code, _reason(resp))
    except asyncio.CancelledError:
        await end_on_wire(call)
        raise
    finally:
        call.close()
