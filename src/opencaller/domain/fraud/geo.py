"""Geo-permissions: a service with them calls only the installation's home countries and the
countries its customer or the operator opened (service settings ``open_countries``).

Every service created since the fraud guard starts with them; services created before keep
every country open (their stored settings lack the flag). A country named in the older
``allowed_countries`` list is opened too: the customer chose it explicitly (and that list,
error 9 as well, still narrows what is allowed)."""

from __future__ import annotations

from ..settings import ServiceSettings


def refused(settings: ServiceSettings, country: str, home: frozenset[str]) -> str | None:
    """Why ``country`` may not be called, or None."""
    if not settings.geo_restricted or country in home:
        return None
    if country in settings.open_countries or country in settings.allowed_countries:
        return None
    return f"country {country} is not opened for this service (geo-permissions)"


def opened(settings: ServiceSettings, countries: list[str]) -> ServiceSettings:
    """``settings`` with ``countries`` opened (ISO codes, upper case, no duplicates)."""
    found = list(dict.fromkeys(c.strip().upper() for c in countries if c.strip()))
    return settings.model_copy(update={"open_countries": found})
