"""`opencaller` — run the service and administer accounts, services and balances."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from .client_commands import register
from .numbering import numbering_app
from .sip_status import sip_status

if TYPE_CHECKING:  # the commands import what they use, so `--help` starts fast
    from ..config import Settings
    from ..storage.database import Database

app = typer.Typer(
    help="opencaller: phone-number verification speaking the uCaller API v1.0.",
    no_args_is_help=True,
    add_completion=False,
)
account_app = typer.Typer(help="Accounts and balances.", no_args_is_help=True)
service_app = typer.Typer(help="Services and their secret keys.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(service_app, name="service")
app.add_typer(numbering_app, name="numbering")
register(app)
app.command("sip-status")(sip_status)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.")]
T = TypeVar("T")


def _settings(config: Path | None, **overrides: object) -> Settings:
    from ..config import load_settings

    if config is not None:
        os.environ["OPENCALLER_CONFIG"] = str(config)
    return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})


def _prepare(settings: Settings) -> None:
    from ..storage.db import is_sqlite, make_url_dir, migrate

    if is_sqlite(settings.database_url):
        make_url_dir(settings.database_url)
    migrate(settings.database_url)


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    from ..storage.database import Database

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(main())


def _cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (a busy port, a foreign address), or None."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return str(exc)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"opencaller {version('opencaller')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """opencaller: phone-number verification speaking the uCaller API v1.0."""


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(help="API processes (needs PostgreSQL).")] = 1,
    no_dispatch: Annotated[
        bool, typer.Option("--no-dispatch", help="API only; calls are placed by `worker`.")
    ] = False,
) -> None:
    """Run the API (and, unless --no-dispatch, the call dispatcher) in this process."""
    import uvicorn

    from ..domain.bootstrap import ensure_demo, ensure_tariff
    from ..domain.clock import Clock
    from ..observability.logs import setup_logging

    settings = _settings(config, host=host, port=port)
    setup_logging(settings.log_level, json=settings.log_json)
    problem = _cannot_listen(settings.host, settings.port)
    if problem:  # say so before printing "listening" and a demo key
        typer.echo(f"error: cannot listen on {settings.host}:{settings.port}: {problem}", err=True)
        raise typer.Exit(1)
    _prepare(settings)
    now = Clock().now()
    if settings.demo:
        demo = _run(
            settings,
            lambda db: ensure_demo(
                db, email=settings.demo_email, balance_rub=settings.demo_balance, now=now
            ),
        )
        base = settings.public_url or f"http://{settings.host}:{settings.port}"
        typer.echo(f"opencaller listening on {base}")
        typer.echo(
            f"  demo account: {demo.email}"
            + (
                f"  password: {demo.password}"
                if demo.password
                else f"  (password forgotten? opencaller account password {demo.email})"
            )
        )
        typer.echo(f"  service_id:   {demo.service_id}")
        typer.echo(f"  key:          {demo.key}")
        typer.echo("  try it:")
        typer.echo(
            f"  curl '{base}/v1.0/initCall?service_id={demo.service_id}&key={demo.key}"
            "&phone=79000000001'"
        )
    else:
        _run(settings, lambda db: ensure_tariff(db, now))
    if no_dispatch:
        # Settings.no_dispatch of the API processes uvicorn starts (they read the environment).
        os.environ["OPENCALLER_NO_DISPATCH"] = "1"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # One set of metrics for all API processes (prometheus_client multiprocess mode).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="opencaller-metrics-")
    uvicorn.run(
        "opencaller.server:build_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        # Forwarded-for headers are read by the API itself, from trusted_proxies only.
        proxy_headers=False,
        loop="uvloop",
        # httptools, with the request head bounded in size and time (wire/protocol.py).
        http="opencaller.wire.protocol:BoundedHttpProtocol",
    )


@app.command()
def worker(
    config: ConfigOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Place calls only (no HTTP): take queued calls from the database until SIGTERM.

    Run `opencaller migrate` first; start as many workers as you like, on any machines.
    """
    from ..observability.logs import setup_logging
    from ..worker import main as worker_main

    settings = _settings(config)
    setup_logging(settings.log_level, json=settings.log_json)
    worker_main(settings, metrics_port=metrics_port)


@app.command()
def purge(
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete finished authorizations and settled webhook deliveries past retention.

    Settings retention_days and webhook_retention_days (0 keeps rows forever). The ledger,
    calls still in progress and anything younger than 2 days are never deleted.
    """
    from ..domain import retention
    from ..domain.clock import Clock

    settings = _settings(config)
    now = Clock().now()
    days, hook_days = settings.retention_days, settings.webhook_retention_days

    async def work(db: Database) -> retention.Purged:
        if dry_run:
            return await retention.count_purgeable(
                db, now, retention_days=days, webhook_retention_days=hook_days
            )
        return await retention.purge(
            db,
            now,
            retention_days=days,
            webhook_retention_days=hook_days,
            batch=settings.retention_batch,
        )

    done = _run(settings, work)
    verb = "would delete" if dry_run else "deleted"
    cutoff = retention.authorization_cutoff(now, days)
    hooks = retention.webhook_cutoff(now, hook_days)
    typer.echo(
        f"{verb} {done.authorizations} authorizations"
        + (f" created before {_iso(cutoff)}" if cutoff is not None else " (kept forever)")
    )
    typer.echo(
        f"{verb} {done.webhooks} webhook deliveries"
        + (f" settled before {_iso(hooks)}" if hooks is not None else " (kept forever)")
    )


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


@app.command("migrate")
def migrate_cmd(config: ConfigOpt = None) -> None:
    """Create or upgrade the database schema."""
    settings = _settings(config)
    _prepare(settings)
    typer.echo("database is up to date")


@account_app.command("create")
def account_create(
    email: str,
    password: Annotated[str | None, typer.Option(help="Dashboard password.")] = None,
    balance: Annotated[float, typer.Option(help="Starting balance, roubles.")] = 0.0,
    admin: Annotated[bool, typer.Option("--admin", help="Operator (admin) account.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create an account on the default tariff."""
    from ..domain.bootstrap import ensure_tariff
    from ..domain.clock import Clock
    from ..domain.money import to_units
    from ..domain.onboarding import AccountExists, open_account
    from ..domain.passwords import hash_password

    if password is not None:
        _check_password(password, email)
    settings = _settings(config)
    _prepare(settings)
    now = Clock().now()

    async def work(db: Database) -> int:
        await ensure_tariff(db, now)  # made apart first: several nodes may start at once
        try:
            async with db.write() as conn:
                return await open_account(
                    conn,
                    email=email,
                    password_hash=hash_password(password) if password else "",
                    now=now,
                    is_admin=admin,
                    balance=to_units(balance),
                    actor="cli",
                )
        except AccountExists as exc:
            raise typer.BadParameter(f"an account {email} exists already") from exc

    aid = _run(settings, work)
    typer.echo(f"account {aid} {email} created")


def _check_password(password: str, email: str) -> None:
    from ..domain.passwords import WeakPassword, check_password

    try:
        check_password(password, email=email)
    except WeakPassword as exc:
        raise typer.BadParameter(str(exc), param_hint="--password") from exc


@account_app.command("password")
def account_password(
    email: str,
    password: Annotated[
        str | None,
        typer.Option(help="The new password; asked for (hidden, twice) when not given."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Set an account's dashboard password; every browser signed in to it is signed out."""
    from ..domain import accounts as acc
    from ..domain import web_sessions
    from ..domain.clock import Clock
    from ..domain.passwords import hash_password

    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    _check_password(password, email)
    settings = _settings(config)
    _prepare(settings)
    now = Clock().now()
    hashed = hash_password(password)

    async def work(db: Database) -> int:
        async with db.write() as conn:
            account = await acc.get_account_by_email(conn, email)
            if account is None:
                raise typer.BadParameter(f"no account {email}")
            await acc.set_password(conn, account.id, hashed, now=now)
            ended = await web_sessions.end_all(conn, account.id)
            await acc.log_action(conn, account.id, "password changed: by the operator", now=now)
            return ended

    ended = _run(settings, work)
    typer.echo(f"password of {email} changed; {ended} signed-in browser(s) signed out")


@account_app.command("topup")
def account_topup(
    email: str,
    amount: float,
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "top-up",
    config: ConfigOpt = None,
) -> None:
    """Add money to an account (a negative amount corrects it downwards)."""
    from ..domain import accounts as acc
    from ..domain import billing
    from ..domain.clock import Clock
    from ..domain.money import to_rub, to_units

    settings = _settings(config)
    now = Clock().now()

    async def work(db: Database) -> int:
        async with db.write() as conn:
            account = await acc.get_account_by_email(conn, email)
            if account is None:
                raise typer.BadParameter(f"no account {email}")
            return await billing.adjust(
                conn, account.id, to_units(amount), now=now, actor="cli", reason=reason
            )

    after = _run(settings, work)
    typer.echo(f"balance of {email}: {to_rub(after)}")


@service_app.command("create")
def service_create(
    email: str,
    name: str,
    direction: Annotated[str, typer.Option(help="Where the service is used.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Create a service for an account; prints its id and secret key."""
    from ..domain import accounts as acc
    from ..domain.clock import Clock

    settings = _settings(config)
    _prepare(settings)
    now = Clock().now()

    async def work(db: Database) -> tuple[int, str]:
        async with db.write() as conn:
            account = await acc.get_account_by_email(conn, email)
            if account is None:
                raise typer.BadParameter(f"no account {email}")
            return await acc.create_service(
                conn, account_id=account.id, name=name, use_direction=direction, now=now
            )

    sid, key = _run(settings, work)
    typer.echo(f"service_id: {sid}\nkey:        {key}")


@service_app.command("key")
def service_key(
    service_id: int,
    regenerate: Annotated[bool, typer.Option("--regenerate", help="Issue a new key.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Show (or regenerate) a service's secret key."""
    from sqlalchemy import select

    from ..domain import accounts as acc
    from ..storage.tables import services

    settings = _settings(config)

    async def work(db: Database) -> str | None:
        async with db.write() as conn:
            found = (
                await conn.execute(select(services.c.secret_key).where(services.c.id == service_id))
            ).scalar()
            if found is None:
                return None
            return await acc.regenerate_key(conn, service_id) if regenerate else str(found)

    key = _run(settings, work)
    if key is None:
        typer.echo(f"no service {service_id}", err=True)
        raise typer.Exit(1)
    typer.echo(key)


def _checked_status_url(settings: Settings, status_url: str | None) -> str | None:
    """The --status-url given (stripped; '' turns webhooks off), or exit 2 if refused."""
    from ..domain import status_events
    from ..webhooks.destinations import DestinationPolicy

    url = None if status_url is None else status_url.strip()
    if url:
        policy = DestinationPolicy.from_settings(settings.webhook_allowed_networks)
        refusal = status_events.status_url_refusal(url, policy)
        if refusal is not None:
            typer.echo(f"--status-url refused: {refusal}", err=True)
            raise typer.Exit(2)
    return url


def _given(**options: bool | None) -> dict[str, object]:
    """The options that were given (not None)."""
    return {k: v for k, v in options.items() if v is not None}


@service_app.command("set")
def service_set(
    service_id: int,
    rps_limit: Annotated[int | None, typer.Option(help="API requests per second.")] = None,
    hourly_limit: Annotated[
        int | None, typer.Option(help="Authorizations per hour (0: no limit).")
    ] = None,
    countries: Annotated[
        str | None, typer.Option(help="Allowed countries, e.g. RU,KZ ('' for all).")
    ] = None,
    ip_allowlist: Annotated[
        str | None, typer.Option(help="Allowed client networks, comma-separated ('' for any).")
    ] = None,
    voice: Annotated[bool | None, typer.Option("--voice/--no-voice")] = None,
    test_mode: Annotated[bool | None, typer.Option("--test-mode/--no-test-mode")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    archived: Annotated[bool | None, typer.Option("--archive/--unarchive")] = None,
    verify_attempts: Annotated[
        int | None,
        typer.Option(min=1, help="verifyCode: codes that may be tried per authorization."),
    ] = None,
    verify_ttl: Annotated[
        int | None,
        typer.Option(min=1, help="verifyCode: seconds after initCall a code can be checked."),
    ] = None,
    status_url: Annotated[
        str | None,
        typer.Option(help="Where status webhooks are POSTed ('' turns them off)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Change a service's settings and state."""
    from ..domain import accounts as acc
    from ..domain import status_events
    from ..domain.settings import ServiceSettings

    settings = _settings(config)
    new_status_url = _checked_status_url(settings, status_url)

    def split(v: str) -> list[str]:
        return [x.strip() for x in v.split(",") if x.strip()]

    async def work(db: Database) -> ServiceSettings | None:
        async with db.write() as conn:
            service = await acc.get_service(conn, service_id)
            if service is None:
                return None
            changes: dict[str, object] = {}
            if rps_limit is not None:
                changes["rps_limit"] = rps_limit
            if hourly_limit is not None:
                changes["hourly_limit"] = hourly_limit or None
            if countries is not None:
                changes["allowed_countries"] = [c.upper() for c in split(countries)]
            if ip_allowlist is not None:
                changes["ip_allowlist"] = split(ip_allowlist)
            if voice is not None:
                changes["voice_enabled"] = voice
            if verify_attempts is not None:
                changes["verify_attempts"] = verify_attempts
            if verify_ttl is not None:
                changes["verify_ttl_s"] = verify_ttl
            new = service.settings.model_copy(update=changes)
            values: dict[str, object] = {
                "settings": ServiceSettings.model_validate(new.model_dump()),
                **_given(test_mode=test_mode, enabled=enabled, archived=archived),
            }
            await acc.update_service(conn, service_id, **values)
            if new_status_url is not None:
                await status_events.set_status_url(conn, service_id, new_status_url or None)
            return new

    new = _run(settings, work)
    if new is None:
        typer.echo(f"no service {service_id}", err=True)
        raise typer.Exit(1)
    typer.echo(new.model_dump_json())
    if new_status_url is not None:
        typer.echo(f"status_url: {new_status_url or 'off'}")


if __name__ == "__main__":
    app()
