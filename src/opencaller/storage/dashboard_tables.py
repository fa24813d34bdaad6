"""Tables of the web dashboard.

- ``dashboard_kv``: the session-signing secret when ``settings.secret`` is empty, so that every
  node of an installation signs and accepts the same cookies.
- ``dashboard_sessions``: one row per signed-in browser. The cookie names a row by a random
  token (only its SHA-256 is stored); deleting the row ends the session everywhere.
- ``signin_attempts``: sign-in attempts counted per key (IP, IP + e-mail, device) in fixed
  windows, incremented before the password is checked.
- ``recovery_codes``: hashed single-use codes that stand in for the second factor.
"""

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

from .tables import Id, metadata

dashboard_kv = Table(
    "dashboard_kv",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # hex SHA-256 of the cookie's token
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("ip", String(64), nullable=False, default=""),
    Column("user_agent", String(512), nullable=False, default=""),
    # A TOTP secret being set up in this browser (never in the cookie).
    Column("pending_totp", String(64), nullable=True),
    Index("ix_dashboard_sessions_account", "account_id"),
)

signin_attempts = Table(
    "signin_attempts",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("window_start", Float, nullable=False),
    Column("count", Integer, nullable=False),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    UniqueConstraint("account_id", "code_hash", name="uq_recovery_codes_account_code"),
)
