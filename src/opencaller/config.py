"""Configuration: environment variables (``OPENCALLER_*``) over an optional TOML file.

Every setting has an embedded default, so ``opencaller serve`` runs on a fresh machine with
SQLite and the call simulator. See docs/configuration.md for the full list.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .phone_text import digits, e164


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
    # Whether a subscriber "enters the code" (docs/antifraud.md): probability per number
    # prefix and channel, e.g. {"7916": {"flash": 0.2, "voice": 0.9}}; the longest prefix
    # wins, numbers under no prefix use conversion_default. Read by tests and bench/fraud.py
    # through Simulator.converts, which draws from a generator seeded with conversion_seed.
    conversion: dict[str, dict[str, float]] = Field(default_factory=dict)
    conversion_default: float = Field(default=1.0, ge=0, le=1)
    conversion_seed: int = 1

    @field_validator("outcomes")
    @classmethod
    def _outcome_numbers(cls, value: dict[str, str]) -> dict[str, str]:
        # Keyed like the calls they apply to (the API's one form of a phone number).
        found = {}
        for raw, outcome in value.items():
            number = e164(raw)
            if not number:
                raise ValueError(f"{raw!r} is not a phone number (ASCII digits, + - ( ) spaces)")
            found[number] = outcome
        return found


class FraudSettings(BaseModel):
    """The fraud guard before every call (domain/fraud, docs/antifraud.md).

    Defaults are set so that an application whose codes are entered at a normal rate never
    meets them: a rule trips only on many calls with almost no code entered."""

    enabled: bool = True
    # Geo-permissions: a service created with them (every new one, when geo_default) calls
    # only these countries until its customer or the operator opens others.
    home_countries: list[str] = Field(default_factory=lambda: ["RU"])
    geo_default: bool = True
    # Counting window: counts cover the current and the previous window (1 to 2 windows).
    window_s: float = Field(default=3600.0, gt=0)
    # A key (prefix, address, client) is suspect below this share of codes entered...
    min_conversion: float = Field(default=0.1, ge=0, le=1)
    # ...once it has at least this many calls in the window:
    run_min_requests: int = Field(default=8, ge=1)  # one hundred consecutive numbers
    prefix8_min_requests: int = Field(default=15, ge=1)  # the number's first 8 digits
    prefix7_min_requests: int = Field(default=25, ge=1)  # the number's first 7 digits
    origin_min_requests: int = Field(default=20, ge=1)  # one client address
    client_min_requests: int = Field(default=20, ge=1)  # one `client` value of a service
    # Whole operators and countries: only a near-total absence of codes on a large sample.
    operator_min_requests: int = Field(default=300, ge=1)
    operator_min_conversion: float = Field(default=0.02, ge=0, le=1)
    # Services that never report a code (no verifyCode) have no conversion to measure: for
    # them the same rules need this many times the calls.
    blind_factor: float = Field(default=4.0, ge=1)
    # Premium-rate and IRSF-known ranges (one prefix a line, # comments); None: the list
    # shipped in the package (domain/fraud/data/high_risk.txt).
    high_risk_ranges_path: str | None = None
    # Channel routing (service setting channel = "auto", and mix when route_mix).
    route_mix: bool = False
    routing_min_sample: int = Field(default=20, ge=1)  # calls per channel before comparing
    routing_epsilon: float = Field(default=0.1, ge=0, le=1)  # share of calls that explore
    routing_seed: int | None = None  # fixed: the same choices every run (tests, bench)


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
    # Webhooks go to public addresses only; CIDR networks listed here are allowed as well,
    # e.g. ["10.20.0.0/16"] for receivers inside your own network.
    webhook_allowed_networks: list[str] = Field(default_factory=list)
    # Webhook delivery (callback and status webhooks): the first retry's delay (doubling up to
    # an hour), how long one request may take, and how long a worker holds a delivery before
    # another may take it over (longer than a request, or a slow receiver gets it twice).
    webhook_backoff_s: float = Field(default=5.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_lease_s: float = Field(default=60.0, gt=0)

    @field_validator("webhook_lease_s")
    @classmethod
    def _lease_outlasts_a_request(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("webhook_timeout_s")
        if timeout is not None and value <= timeout:
            raise ValueError("must be longer than webhook_timeout_s")
        return value

    # Voice prompts: the espeak-ng binary, and how long synthesising one language's prompt
    # pieces may take before the voice call is given up (the process is killed).
    espeak: str = "espeak-ng"
    espeak_timeout_s: float = Field(default=10.0, gt=0)
    # Dashboard: a notice on every page when a customer's balance is at or below their alert
    # threshold (this default until they set one), with how to top up, in the operator's words.
    low_balance_alert_rub: float = 50.0
    topup_instructions: str = ""
    # Bounded requests (docs/compatibility.md "Request limits"): a uCaller request is well
    # under 16 KiB and the dashboard's largest form (service settings with an IP allow-list)
    # a few KiB, so these leave room while refusing what no client sends.
    max_body_bytes: int = 64 * 1024  # larger bodies are refused before they are read
    max_header_bytes: int = 16 * 1024  # request line plus headers
    max_form_fields: int = 100  # arguments in the query, a form or a JSON object
    header_timeout_s: float = 10.0  # from connecting (or the first byte) to the end of the headers
    body_timeout_s: float = 10.0  # from the end of the headers to the end of the body
    keepalive_timeout_s: float = 5.0  # idle time between two requests on one connection
    # PostgreSQL outages (docs/deployment.md): how long to wait before answering "retry later"
    db_connect_timeout_s: float = 3.0  # opening a connection
    db_statement_timeout_s: float = 5.0  # one statement (enforced by the client)
    db_acquire_timeout_s: float = 3.0  # waiting for a free connection of the pool
    # Extra time after a call's lease expired before another worker finalises it interrupted;
    # None: lease_s. Covers a database outage during which the owner could not renew.
    lease_grace_s: float | None = None
    # Redis faults and failover (docs/deployment.md, "Redis outages" and "Redis Sentinel")
    redis_sentinels: list[str] = Field(default_factory=list)  # "host:26379" of each sentinel
    redis_sentinel_master: str = "mymaster"  # the name the sentinels monitor
    redis_socket_timeout_s: float = 0.5  # a Redis reply later than this counts as an outage
    redis_connect_timeout_s: float = 0.5
    redis_health_check_interval_s: float = 5.0  # PING a connection idle this long before use
    redis_probe_interval_s: float = 1.0  # while Redis is down, how often it is tried again

    @field_validator("test_numbers", "test_ranges")
    @classmethod
    def _phone_digits(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # The API's one normalisation (ASCII digits), so "+7 900 000-00-01" matches the call.
        found = []
        for raw in value:
            number = e164(raw) if info.field_name == "test_numbers" else digits(raw)
            if not number:
                raise ValueError(f"{raw!r} is not a phone number (ASCII digits, + - ( ) spaces)")
            found.append(number)
        return found
    # Retention (domain/retention.py, `opencaller purge`, and a periodic job in every process
    # that dispatches calls). 0 keeps rows forever. Never younger than 2 days, never the ledger.
    retention_days: float = Field(default=180.0, ge=0)  # finished authorizations
    webhook_retention_days: float = Field(default=30.0, ge=0)  # delivered or failed deliveries
    retention_interval_s: float = Field(default=3600.0, gt=0)  # between two purges
    retention_batch: int = Field(default=500, ge=1)  # rows per delete (one short transaction)
    # The fraud guard and conversion routing (docs/antifraud.md)
    fraud: FraudSettings = Field(default_factory=FraudSettings)
    # API processes that only take requests; calls are placed by `opencaller worker`.
    # `serve --no-dispatch` sets it (OPENCALLER_NO_DISPATCH) for every API process it starts.
    no_dispatch: bool = False


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
