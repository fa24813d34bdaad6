"""status webhooks: the service's status_url and the status events outbox

Revision ID: 0009_status_webhooks
Revises: 0008_verify_code
Create Date: 2026-11-27 16:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_status_webhooks"
down_revision = "0008_verify_code"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("status_url", sa.Text(), nullable=True))
    op.create_table(
        "status_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("service_id", ID, nullable=False),
        sa.Column("authorization_id", ID, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("occurred_at", sa.Float(), nullable=False),
        sa.Column("call_status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("sip_code", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name="fk_status_events_service_id_services",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_status_events"),
    )
    op.create_index("ix_status_events_due", "status_events", ["state", "next_attempt_at"])
    op.create_index("ix_status_events_authorization", "status_events", ["authorization_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_status_events_authorization", table_name="status_events")
    op.drop_index("ix_status_events_due", table_name="status_events")
    op.drop_table("status_events")
    with op.batch_alter_table("services") as batch:
        batch.drop_column("status_url")
