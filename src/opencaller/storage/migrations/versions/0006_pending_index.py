"""dispatch queue index on pending rows only

The index on (dispatch_state, lease_until) covered every authorization ever made, finished or
not; the claim, recovery and queue-depth queries only read rows still queued, dialing or
waiting. A partial index on those keeps its size at the size of the queue.

Revision ID: 0006_pending_index
Revises: 0005_repeat_count
Create Date: 2026-11-27 13:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_pending_index"
down_revision = "0005_repeat_count"
branch_labels = None
depends_on = None

PENDING = "dispatch_state IN ('queued', 'dialing', 'waiting')"


def upgrade() -> None:
    # Migrations run in one transaction under an advisory lock (env.py), so the index is not
    # built CONCURRENTLY: writes to authorizations wait while it is built (seconds for
    # millions of rows, as only pending rows go in). To avoid even that, create it beforehand
    # with the statement in docs/deployment.md; IF NOT EXISTS then skips it here.
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_index(
        "ix_authorizations_pending",
        "authorizations",
        ["dispatch_state", "id"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
        if_not_exists=pg,
    )
    op.drop_index("ix_authorizations_dispatch", table_name="authorizations", if_exists=pg)


def downgrade() -> None:
    op.create_index(
        "ix_authorizations_dispatch", "authorizations", ["dispatch_state", "lease_until"]
    )
    op.drop_index("ix_authorizations_pending", table_name="authorizations")
