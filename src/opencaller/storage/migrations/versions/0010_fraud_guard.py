"""fraud guard: signal counters, admissions, refused attempts and blocks

Revision ID: 0010_fraud_guard
Revises: 0009_status_webhooks
Create Date: 2026-11-27 16:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_fraud_guard"
down_revision = "0009_status_webhooks"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fraud_counters",
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "bucket", name="pk_fraud_counters"),
    )
    op.create_table(
        "fraud_admissions",
        sa.Column("service_id", ID, nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("signal_keys", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("service_id", "phone", name="pk_fraud_admissions"),
    )
    op.create_table(
        "fraud_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("service_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("country_iso", sa.String(2), nullable=False),
        sa.Column("operator", sa.String(120), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("rule_key", sa.String(120), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("retry_after", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name="fk_fraud_attempts_service_id_services",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_attempts"),
    )
    op.create_index(
        "ix_fraud_attempts_service_time", "fraud_attempts", ["service_id", "created_at"]
    )
    op.create_index("ix_fraud_attempts_time", "fraud_attempts", ["created_at"])
    op.create_table(
        "fraud_blocks",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("rule_key", sa.String(120), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("service_id", ID, nullable=True),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("lifted_at", sa.Float(), nullable=True),
        sa.Column("lifted_by", sa.String(254), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_blocks"),
        sa.UniqueConstraint("rule_key", "until", name="uq_fraud_blocks_key_until"),
    )
    op.create_index("ix_fraud_blocks_until", "fraud_blocks", ["until"])


def downgrade() -> None:
    op.drop_index("ix_fraud_blocks_until", table_name="fraud_blocks")
    op.drop_table("fraud_blocks")
    op.drop_index("ix_fraud_attempts_time", table_name="fraud_attempts")
    op.drop_index("ix_fraud_attempts_service_time", table_name="fraud_attempts")
    op.drop_table("fraud_attempts")
    op.drop_table("fraud_admissions")
    op.drop_table("fraud_counters")
