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
