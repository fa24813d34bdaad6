"""The durable webhook outbox (one row per delivery), on the shared schema metadata."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, String, Table, Text

from opencaller.storage.tables import Id, metadata

# state: pending -> delivered | failed. A worker leases due rows (lease_owner/lease_until) so
# several processes can deliver without sending one row twice while the lease holds.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), nullable=False),
    Column("authorization_id", Id, nullable=True),
    Column("event", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),  # the exact JSON that is signed and sent
    Column("state", String(12), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=10),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Index("ix_webhook_outbox_due", "state", "next_attempt_at"),
)

# Status events (our extension): what happened to an authorization, for the service's
# status_url. Written in the transaction (or statement) that makes the change; the JSON is
# rendered at delivery from these columns (webhooks/status.py), to the service's status_url
# as it is then. Events of one authorization are delivered in ``id`` order: a row is due only
# when no earlier row of its authorization is still pending.
status_events = Table(
    "status_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),  # random, for the receiver's deduplication
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), nullable=False),
    Column("authorization_id", Id, nullable=False),
    Column("event", String(16), nullable=False),  # dialing | finished | verified
    Column("occurred_at", Float, nullable=False),
    Column("call_status", Integer, nullable=True),  # finished only
    Column("outcome", String(16), nullable=True),
    Column("sip_code", Integer, nullable=True),
    Column("state", String(12), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Index("ix_status_events_due", "state", "next_attempt_at"),
    Index("ix_status_events_authorization", "authorization_id", "id"),
)
