"""The fraud guard's tables (domain/fraud), on the shared schema metadata."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from opencaller.storage.tables import Id, metadata

# Calls and codes entered per signal key and window (used when Redis is not configured or
# is down): key like "s12:p7:7916123" or "all:ip:203.0.113.7"; bucket = time // window_s.
fraud_counters = Table(
    "fraud_counters",
    metadata,
    Column("key", String(120), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("requests", Integer, nullable=False, default=0),
    Column("verified", Integer, nullable=False, default=0),
)

# What an admitted call counted (its keys and window), so that the code entered later is
# counted on the same keys. One row per service and number: the latest call wins.
fraud_admissions = Table(
    "fraud_admissions",
    metadata,
    Column("service_id", Id, primary_key=True),
    Column("phone", String(20), primary_key=True),
    Column("bucket", Integer, nullable=False),
    Column("signal_keys", Text, nullable=False),  # space-separated
    Column("created_at", Float, nullable=False),
)

# Every refused attempt, with its reason: never charged, shown to the customer and operator.
fraud_attempts = Table(
    "fraud_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Id, nullable=False),
    Column("phone", String(20), nullable=False),
    Column("country_iso", String(2), nullable=False),
    Column("operator", String(120), nullable=False, default=""),
    Column("origin", String(64), nullable=False, default=""),
    Column("client", String(64), nullable=True),
    Column("code", Integer, nullable=False),  # the error answered: 64, or 9 for geography
    Column("rule", String(32), nullable=False),
    Column("rule_key", String(120), nullable=False, default=""),
    Column("reason", String(256), nullable=False),
    Column("retry_after", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_fraud_attempts_service_time", "service_id", "created_at"),
    Index("ix_fraud_attempts_time", "created_at"),
)

# A key blocked until a time (the end of the window its counts fall out of). An operator can
# lift it: the key is then not blocked again before ``until``.
fraud_blocks = Table(
    "fraud_blocks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule_key", String(120), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("reason", String(256), nullable=False),
    Column("service_id", Id, nullable=True),  # None: installation-wide
    Column("until", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("lifted_at", Float, nullable=True),
    Column("lifted_by", String(254), nullable=True),
    UniqueConstraint("rule_key", "until", name="uq_fraud_blocks_key_until"),
    Index("ix_fraud_blocks_until", "until"),
)
