"""Alembic environment: runs migrations through the async engine of the configured URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# Importing these registers their tables on the shared metadata, for autogenerate.
from opencaller.storage import (  # noqa: F401
    dashboard_tables,
    fraud_tables,
    numbering_tables,
    webhook_tables,
)
from opencaller.storage.tables import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Nodes that start together migrate one after another; the later ones find no work.
        connection.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_main())
