"""Geo-permissions: a service with them calls only the installation's home countries and the
countries its customer or the operator opened (service settings ``open_countries``).

Every service created since the fraud guard starts with them; services created before keep
every country open (their stored settings lack the flag). The older ``allowed_countries``
list (error 9 too) still narrows what either allows."""

from __future__ import annotations

from ..settings import ServiceSettings


def refused(settings: ServiceSettings, country: str, home: frozenset[str]) -> str | None:
    """Why ``country`` may not be called, or None."""
    if not settings.geo_restricted or country in home or country in settings.open_countries:
        return None
    return f"country {country} is not opened for this service (geo-permissions)"


def opened(settings: ServiceSettings, countries: list[str]) -> ServiceSettings:
    """``settings`` with ``countries`` opened (ISO codes, upper case, no duplicates)."""
    found = list(dict.fromkeys(c.strip().upper() for c in countries if c.strip()))
    return settings.model_copy(update={"open_countries": found})
