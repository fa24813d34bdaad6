"""Putting webhook deliveries in the outbox, inside the caller's transaction."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from opencaller.storage.webhook_tables import webhook_outbox

INBOUND_CALL = "inbound_call"


@dataclass(frozen=True, slots=True)
class InboundCallPayload:
    """What the customer's callback receives when the subscriber called us."""

    call_id: str
    callback_link: str
    client_number: str  # digits
    confirmation_number: str
    is_mnp: bool
    operator_name: str | None
    operator_name_mnp: str | None
    region_name: str

    def to_json(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "callbackLink": self.callback_link,
            "clientNumber": self.client_number,
            "confirmationNumber": self.confirmation_number,
            "isMnp": self.is_mnp,
            "operatorName": self.operator_name,
            "operatorNameMnp": self.operator_name_mnp,
            "regionName": self.region_name,
        }

    def body(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


async def enqueue(
    conn: AsyncConnection,
    *,
    service_id: int,
    url: str,
    event: str,
    body: bytes,
    authorization_id: int | None = None,
    max_attempts: int = 10,
    now: float | None = None,
) -> int:
    """Add one delivery. Runs in ``conn``'s transaction: it is sent only if that commits."""
    t = time.time() if now is None else now
    res = await conn.execute(
        insert(webhook_outbox)
        .values(
            service_id=service_id,
            authorization_id=authorization_id,
            event=event,
            url=url,
            body=body.decode(),
            state="pending",
            attempts=0,
            max_attempts=max_attempts,
            next_attempt_at=t,
            created_at=t,
        )
        .returning(webhook_outbox.c.id)
    )
    return int(res.scalar_one())


async def enqueue_inbound_call(
    conn: AsyncConnection,
    *,
    service_id: int,
    url: str,
    payload: InboundCallPayload,
    authorization_id: int | None = None,
    max_attempts: int = 10,
    now: float | None = None,
) -> int:
    return await enqueue(
        conn,
        service_id=service_id,
        url=url,
        event=INBOUND_CALL,
        body=payload.body(),
        authorization_id=authorization_id,
        max_attempts=max_attempts,
        now=now,
    )
