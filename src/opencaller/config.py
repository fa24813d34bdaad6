"""Configuration: environment variables (``OPENCALLER_*``) over an optional TOML file.

Every setting has an embedded default, so ``opencaller serve`` runs on a fresh machine with
SQLite and the call simulator. See docs/configuration.md for the full list.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseModel):
    """The built-in call simulator: a stand-in for the public phone network."""

    delay_s: float = 1.0  # time from dialling to the outcome for ordinary numbers
    # Outcome for numbers that are not test numbers: "delivered" or any Outcome value.
    default_outcome: str = "delivered"
    # Per-number outcomes for demos, e.g. {"79161234567": "busy"}.
    outcomes: dict[str, str] = Field(default_factory=dict)
    # Append one JSON line per call started here (who was called, from which number).
    log_path: str | None = None
    # Confirmation number handed out by inboundCallWaiting when no SIP trunk is configured.
    inbound_number: str | None = "79990000000"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OPENCALLER_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite:///./var/opencaller.db"
    redis_url: str | None = None
    redis_prefix: str = "oc:"  # keys of this installation, so several can share one Redis
    db_pool_size: int = 10  # connections per process (PostgreSQL); as many again on overflow
    host: str = "127.0.0.1"
    port: int = 8080
    trusted_proxies: list[str] = Field(default_factory=list)  # honour X-Forwarded-For from these
    public_url: str | None = None  # how customers reach us; used in printed examples
    provider: Literal["simulator", "sip"] = "simulator"
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    sip: dict[str, Any] = Field(default_factory=dict)  # parsed by telephony.sip.config
    # Numbers that are never billed and skip the per-number limits.
    test_numbers: list[str] = Field(default_factory=lambda: ["79000000001", "79000000002"])
    test_ranges: list[str] = Field(default_factory=list)  # prefixes, e.g. ["7900000"]
    voice_countries: list[str] = Field(default_factory=lambda: ["RU", "KZ"])
    require_verified_phone: bool = False  # error 1005 for accounts without a verified phone
    # Dispatch
    dispatch_concurrency: int = 200
    lease_s: float = 30.0
    poll_interval_s: float = 0.5  # fallback when no wake-up arrives (LISTEN/NOTIFY)
    drain_s: float = 10.0  # how long a stopping worker lets calls in progress finish
    auth_cache_s: float = 1.0  # how long a service's key and settings are cached per node
    # Demo account created on a new database by `serve`
    demo: bool = True
    demo_email: str = "demo@opencaller.local"
    demo_balance: float = 1000.0
    secret: str = ""  # signs dashboard sessions; generated once and kept in the database if empty
    log_json: bool = False
    log_level: str = "INFO"
    # Files derived from installed packages (the place-name table); default: see docs
    cache_dir: str | None = None
    # Retention (domain/retention.py, `opencaller purge`, and a periodic job in every process
    # that dispatches calls). 0 keeps rows forever. Never younger than 2 days, never the ledger.
    retention_days: float = Field(default=180.0, ge=0)  # finished authorizations
    webhook_retention_days: float = Field(default=30.0, ge=0)  # delivered or failed deliveries
    retention_interval_s: float = Field(default=3600.0, gt=0)  # between two purges
    retention_batch: int = Field(default=500, ge=1)  # rows per delete (one short transaction)


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """File values first, then environment variables, then explicit overrides."""
    path = config_file or os.environ.get("OPENCALLER_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        with Path(path).open("rb") as f:
            file_values = tomllib.load(f)
    env_set = Settings().model_dump(exclude_unset=True)
    return Settings.model_validate(_merge(_merge(file_values, env_set), overrides))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested tables combine, so one variable does not reset a whole section."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
