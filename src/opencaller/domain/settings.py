"""Per-service settings, stored as JSON on the service row."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ServiceSettings(BaseModel):
    # ISO 3166-1 alpha-2 codes the service may call; empty means every country.
    allowed_countries: list[str] = Field(default_factory=list)
    # Authorizations per sliding hour; None or 0 means no limit of the service's own.
    hourly_limit: int | None = None
    # Addresses or CIDR networks allowed to call the API; empty means any.
    ip_allowlist: list[str] = Field(default_factory=list)
    # Whether voice codes may be sent at all (the installation decides the countries).
    voice_enabled: bool = True
    # API requests per second for the service (error 429 beyond it).
    rps_limit: int = 50
    # verifyCode: codes that may be tried per authorization (its chain of repeats shares
    # them), and how long after initCall a code can be checked.
    verify_attempts: int = Field(default=5, ge=1)
    verify_ttl_s: int = Field(default=600, ge=1)
    # Geo-permissions (domain/fraud/geo.py): when set, only the installation's home
    # countries and those in open_countries may be called. Absent on services created before
    # the fraud guard, which therefore keep every country open.
    geo_restricted: bool = False
    open_countries: list[str] = Field(default_factory=list)
    # "auto": flash or voice chosen per destination operator by measured conversion.
    channel: Literal["request", "auto"] = "request"
