"""server-side code check: attempts and verification time on the authorization

Revision ID: 0008_verify_code
Revises: 0005_repeat_count
Create Date: 2026-11-27 13:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_verify_code"
down_revision = "0005_repeat_count"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.add_column(
            sa.Column("verify_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("verified_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.drop_column("verified_at")
        batch.drop_column("verify_attempts")
