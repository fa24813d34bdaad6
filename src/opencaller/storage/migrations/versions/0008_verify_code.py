"""server-side code check: attempts and verification time on the authorization; the
idempotency keys of methods other than initCall

Revision ID: 0008_verify_code
Revises: 0007_dashboard_security
Create Date: 2026-11-27 13:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_verify_code"
down_revision = "0007_dashboard_security"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.add_column(
            sa.Column("verify_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("verified_at", sa.Float(), nullable=True))
    op.create_table(
        "request_keys",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("service_id", ID, nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("unique_key", sa.String(64), nullable=False),
        sa.Column("authorization_id", ID, nullable=False),
        sa.Column("arguments", sa.String(256), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name="fk_request_keys_service_id_services",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["authorizations.id"],
            name="fk_request_keys_authorization_id_authorizations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_request_keys"),
        sa.UniqueConstraint("service_id", "method", "unique_key", name="uq_request_keys_key"),
    )


def downgrade() -> None:
    op.drop_table("request_keys")
    with op.batch_alter_table("authorizations") as batch:
        batch.drop_column("verified_at")
        batch.drop_column("verify_attempts")
