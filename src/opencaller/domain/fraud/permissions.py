"""Changes to a service's fraud settings, by its customer or by the operator."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select, update

from ...storage.database import Database
from ...storage.tables import services
from ..settings import ServiceSettings
from . import geo


async def change(
    db: Database,
    service_id: int,
    *,
    countries: list[str],
    restricted: bool,
    channel: Literal["request", "auto"],
) -> ServiceSettings:
    """Open ``countries`` beyond the home ones (or lift geo-permissions), choose the channel."""
    async with db.write() as conn:
        q = select(services.c.settings).where(services.c.id == service_id)
        stored = (await conn.execute(q)).scalar_one()
        current = ServiceSettings.model_validate(stored or {})
        new = geo.opened(current, countries).model_copy(
            update={"geo_restricted": restricted, "channel": channel}
        )
        await conn.execute(
            update(services).where(services.c.id == service_id).values(settings=new.model_dump())
        )
    return new


async def settings_of(db: Database, service_id: int | None) -> ServiceSettings | None:
    """A service's stored settings, or None if there is no such service."""
    if service_id is None:
        return None
    async with db.read() as conn:
        q = select(services.c.settings).where(services.c.id == service_id)
        stored = (await conn.execute(q)).first()
    return None if stored is None else ServiceSettings.model_validate(stored[0] or {})
