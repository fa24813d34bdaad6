"""numbering directory: registry ranges, ported numbers, import history

Revision ID: 0002_numbering
Revises: 0001_core
Create Date: 2026-11-26 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_numbering"
down_revision = "0001_core"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "numbering_ranges",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("category", sa.String(length=8), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("range_from", sa.BigInteger(), nullable=False),
        sa.Column("range_to", sa.BigInteger(), nullable=False),
        sa.Column("capacity", sa.BigInteger(), nullable=False),
        sa.Column("operator", sa.String(length=512), nullable=False),
        sa.Column("inn", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=256), nullable=False),
        sa.Column("city", sa.String(length=256), nullable=False),
        sa.Column("region_raw", sa.Text(), nullable=False),
        sa.Column("territory", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_numbering_ranges")),
    )
    op.create_index("ix_numbering_ranges_from", "numbering_ranges", ["range_from"])
    op.create_index("ix_numbering_ranges_category", "numbering_ranges", ["category"])
    op.create_table(
        "ported_numbers",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("operator", sa.String(length=512), nullable=False),
        sa.Column("mnc", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_ported_numbers")),
    )
    op.create_table(
        "numbering_imports",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_numbering_imports")),
    )


def downgrade() -> None:
    op.drop_table("numbering_imports")
    op.drop_table("ported_numbers")
    op.drop_index("ix_numbering_ranges_category", table_name="numbering_ranges")
    op.drop_index("ix_numbering_ranges_from", table_name="numbering_ranges")
    op.drop_table("numbering_ranges")
