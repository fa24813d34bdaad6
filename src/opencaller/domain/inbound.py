"""Inbound verification: the subscriber called one of our numbers.

The telephony provider reports the call (it has already answered 180 then 603, so the call
is free for the caller); here it is matched to the waiting authorization, which becomes
``call_status`` 1, and the customer's webhook is queued in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import update

from ..numbering import InvalidPhoneNumber, PhoneDirectory, normalize_phone
from ..observability import metrics
from ..storage.database import Database
from ..storage.tables import authorizations
from ..telephony.base import InboundCall, Outcome
from ..webhooks.outbox import InboundCallPayload, enqueue_inbound_call
from . import status_events
from .authorizations import Authorizations
from .call_outcomes import Ending, Hold, finish_in
from .clock import Clock

log = logging.getLogger("opencaller.inbound")
a = authorizations.c


def _e164(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidPhoneNumber:
        return raw


class InboundVerifications:
    def __init__(
        self,
        db: Database,
        auths: Authorizations,
        directory: PhoneDirectory,
        clock: Clock,
        *,
        delivered: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.auths = auths
        self.directory = directory
        self.clock = clock
        self.delivered = delivered or (lambda: None)

    async def on_call(self, call: InboundCall) -> int | None:
        """Match the call to a waiting verification; the ucaller_id, or None if none waits."""
        caller, called = _e164(call.caller), _e164(call.called)
        now = self.clock.now()
        try:
            info = await self.directory.lookup(caller)
            fields = info.webhook_fields()
        except InvalidPhoneNumber:
            fields = {
                "isMnp": False,
                "operatorName": None,
                "operatorNameMnp": None,
                "regionName": "",
            }
        async with self.db.write() as conn:
            auth = await self.auths.match_inbound(conn, caller, called, now)
            if auth is None:
                log.info(
                    "inbound call matches no waiting verification",
                    extra={"caller": caller, "called": called},
                )
                return None
            ending = Ending(
                auth.id,
                Outcome.DELIVERED.value,
                reached=True,
                finished_at=now,
                caller_id=caller,
                sip_reason="the subscriber called; declined so the call is free",
            )
            # Its status events are recorded below, ``verified`` before ``finished``.
            if not await finish_in(conn, ending, Hold.waiting(), events=False):
                log.info("inbound call came after its wait ended", extra={"ucaller_id": auth.id})
                return None
            # the call itself proves the number
            verified = await conn.execute(
                update(authorizations)
                .where(a.id == auth.id)
                .values(verified_at=now)
                .returning(*status_events.RETURNING)
            )
            await status_events.enqueue_inbound_verified(
                conn, verified.one(), authorization_id=auth.id, now=now
            )
            payload = InboundCallPayload(
                call_id=str(auth.id),
                callback_link=auth.callback_url or "",
                client_number=caller,
                confirmation_number=auth.confirmation_number or called,
                is_mnp=bool(fields["isMnp"]),
                operator_name=fields["operatorName"],
                operator_name_mnp=fields["operatorNameMnp"],
                region_name=str(fields["regionName"] or ""),
            )
            await enqueue_inbound_call(
                conn,
                service_id=auth.service_id,
                url=auth.callback_url or "",
                payload=payload,
                authorization_id=auth.id,
                now=now,
            )
        log.info("inbound verification confirmed", extra={"ucaller_id": auth.id})
        metrics.count_verified(auth)
        self.delivered()
        return auth.id
