"""The schema, as SQLAlchemy Core tables (one metadata for SQLite and PostgreSQL).

Conventions that keep both engines alike:
- times are Unix seconds as floats (``*_at``); the wire rounds them down to integers;
- money is an integer count of 1/10000 rouble (``MONEY_SCALE``), so balance arithmetic is exact
  and ``UPDATE ... SET balance = balance - :p WHERE balance >= :p`` is atomic on both engines.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

MONEY_SCALE = 10_000

# Dispatch states of rows still in the queue (the partial index below; migration 0006).
PENDING_STATES = "dispatch_state IN ('queued', 'dialing', 'waiting')"

# Named constraints so Alembic migrations are stable on every engine.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger ids that are still INTEGER PRIMARY KEY (rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

tariffs = Table(
    "tariffs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Price of one operation on a channel; country_iso "*" is the default for the tariff.
tariff_prices = Table(
    "tariff_prices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tariff_id", ForeignKey("tariffs.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),  # flash | voice | lookup | inbound
    Column("country_iso", String(2), nullable=False, default="*"),
    Column("price", BigInteger, nullable=False),
    UniqueConstraint("tariff_id", "channel", "country_iso", name="uq_tariff_prices_key"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False, default=""),
    Column("telegram_id", BigInteger, nullable=True),
    Column("two_auth", Boolean, nullable=False, default=False),
    Column("totp_secret", String(64), nullable=True),
    # The last TOTP time step accepted: a code is good once (RFC 6238 §5.2).
    Column("totp_last_step", BigInteger, nullable=True),
    Column("phone", String(20), nullable=True),
    Column("phone_verified", Boolean, nullable=False, default=False),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("tariff_id", ForeignKey("tariffs.id"), nullable=True),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("bonus_balance", BigInteger, nullable=False, default=0),
    # The dashboard warns below this balance; NULL means the installation's default.
    Column("low_balance_alert", BigInteger, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

account_logs = Table(
    "account_logs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("action", String(128), nullable=False),
    Column("user_agent", String(512), nullable=False, default=""),
    Column("ip", String(64), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Index("ix_account_logs_account", "account_id", "created_at"),
)

services = Table(
    "services",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("use_direction", String(256), nullable=False, default=""),
    Column("secret_key", String(32), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("archived", Boolean, nullable=False, default=False),
    Column("test_mode", Boolean, nullable=False, default=False),
    # ServiceSettings (domain/settings.py) as JSON: allowed countries, limits, IP list, voice.
    Column("settings", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("last_request_at", Float, nullable=True),
    # Where status events go (our extension; webhooks/status.py); NULL: none are recorded.
    Column("status_url", Text, nullable=True),
    Index("ix_services_account", "account_id"),
)

# One row per authorization (a ucaller_id). The row is also the durable dispatch queue entry:
# dispatch_state moves queued -> leased -> dialing -> done, and is committed before each step.
authorizations = Table(
    "authorizations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("direction", String(8), nullable=False, default="out"),  # out | in
    Column("phone", String(20), nullable=False),
    Column("code", String(4), nullable=False),
    Column("client", String(64), nullable=True),
    Column("unique_key", String(64), nullable=True),
    Column("kind", String(8), nullable=False, default="flash"),  # flash | voice | mix
    Column("country_iso", String(2), nullable=False, default=""),
    Column("is_test", Boolean, nullable=False, default=False),
    Column("cost", BigInteger, nullable=False, default=0),
    Column("balance_before", BigInteger, nullable=False, default=0),
    Column("refunded", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    # repeat chain: first_id is the original authorization; repeat_index 0 for the original
    Column("first_id", BigInteger, nullable=True),
    Column("repeat_index", Integer, nullable=False, default=0),
    # on the original: how many repeats it has, so getInfo looks for them only when there are
    Column("repeat_count", Integer, nullable=False, default=0, server_default="0"),
    # outcome
    Column("call_status", Integer, nullable=False, default=-1),  # -1 pending, 0 not reached, 1
    Column("outcome", String(16), nullable=True),
    Column("caller_id", String(20), nullable=True),
    Column("sip_code", Integer, nullable=True),
    Column("sip_reason", String(128), nullable=True),
    Column("q850_cause", Integer, nullable=True),
    Column("finished_at", Float, nullable=True),
    # dispatch
    Column("dispatch_state", String(8), nullable=False, default="queued"),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("dialed_at", Float, nullable=True),
    # inbound verification
    Column("callback_url", Text, nullable=True),
    Column("confirmation_number", String(20), nullable=True),
    # server-side code check (verifyCode), kept on the chain's original: codes tried, and
    # when the right one was given (or the inbound call arrived). No Python-side default:
    # the prepared INSERTs name only the columns they write.
    Column("verify_attempts", Integer, nullable=False, server_default="0"),
    Column("verified_at", Float, nullable=True),
    UniqueConstraint("service_id", "unique_key", name="uq_authorizations_unique"),
    Index("ix_authorizations_phone_time", "phone", "created_at"),
    Index("ix_authorizations_service_time", "service_id", "created_at"),
    # Only rows still in the dispatch queue: the claim, recovery and queue-depth queries read
    # these, and the index stays as small as the queue however many finished rows are kept.
    Index(
        "ix_authorizations_pending",
        "dispatch_state",
        "id",
        postgresql_where=text(PENDING_STATES),
        sqlite_where=text(PENDING_STATES),
    ),
    Index("ix_authorizations_first", "first_id"),
)

# Every movement of money: charges (negative), refunds, top-ups, corrections.
ledger = Table(
    "ledger",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # charge | refund | topup | correction
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("authorization_id", BigInteger, nullable=True),
    Column("channel", String(16), nullable=True),
    Column("actor", String(254), nullable=False, default="system"),
    Column("reason", String(256), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Index("ix_ledger_account_time", "account_id", "created_at"),
)

# Idempotency keys (`unique`) of methods other than initCall (whose key is on its row): the
# first answer, replayed for the same key and arguments. Kept as long as the authorization.
request_keys = Table(
    "request_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), nullable=False),
    Column("method", String(32), nullable=False),
    Column("unique_key", String(64), nullable=False),
    Column("authorization_id", ForeignKey("authorizations.id", ondelete="CASCADE"), nullable=False),
    Column("arguments", String(256), nullable=False),
    Column("answer", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("service_id", "method", "unique_key", name="uq_request_keys_key"),
)
