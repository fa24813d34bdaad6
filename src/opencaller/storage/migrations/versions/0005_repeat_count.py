"""repeat count on the original authorization; joins the heads of 0002-0004

Revision ID: 0005_repeat_count
Revises: 0002_numbering, 0003_webhooks, 0004_dashboard
Create Date: 2026-11-26 15:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_repeat_count"
down_revision = ("0002_numbering", "0003_webhooks", "0004_dashboard")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.add_column(
            sa.Column("repeat_count", sa.Integer(), nullable=False, server_default="0")
        )
    # Originals that already have repeats.
    op.execute(
        "UPDATE authorizations SET repeat_count = (SELECT count(*) FROM authorizations r"
        " WHERE r.first_id = authorizations.id) WHERE first_id IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.drop_column("repeat_count")
