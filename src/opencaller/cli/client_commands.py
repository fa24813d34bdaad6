"""Commands for people talking to a running opencaller (or uCaller): call, info, watch…

They use ``opencaller.client``; credentials come from ``--url/--service-id/--key`` or the
``OPENCALLER_URL``, ``OPENCALLER_SERVICE_ID``, ``OPENCALLER_KEY`` environment variables.
``--json`` prints the server's answer untouched, for scripts.

Exit codes: 0 ok, 1 the API answered an error, 2 usage, 3 the call was not reached,
4 the call was still being checked when ``watch`` gave up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # imported by the commands that use them: `--help` starts fast
    from ..client import Client, GetInfo
    from ..client.models import ApiModel


DEFAULT_URL = "http://127.0.0.1:8080"  # `opencaller serve`; never send keys to uCaller by default

EXIT_API_ERROR = 1
EXIT_NOT_REACHED = 3
EXIT_PENDING = 4

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="OPENCALLER_URL", help="API base URL.", show_default=True)
]
ServiceIdOpt = Annotated[
    str | None, typer.Option("--service-id", envvar="OPENCALLER_SERVICE_ID", help="Service id.")
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", envvar="OPENCALLER_KEY", help="Service secret key.", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]

CALL_STATUS = {-1: "being checked", 0: "not reached", 1: "reached"}  # client.models.CallStatus
TIME_FIELDS = {"init_time", "creation_time", "last_request", "created", "updated", "verified_at"}


def _client(url: str, service_id: str | None, key: str | None) -> Client:
    from ..client import Client

    if not service_id or not key:
        typer.echo(
            "error: credentials missing; pass --service-id and --key "
            "or set OPENCALLER_SERVICE_ID and OPENCALLER_KEY",
            err=True,
        )
        raise typer.Exit(2)
    return Client(service_id, key, base_url=url)


@contextmanager
def _api_errors() -> Iterator[None]:
    from ..client import UcallerAPIError

    try:
        yield
    except UcallerAPIError as err:
        typer.echo(f"error {err.code}: {err.message}", err=True)
        raise typer.Exit(EXIT_API_ERROR) from err


def _value(name: str, value: Any) -> str:
    if name == "call_status" and isinstance(value, int):
        return f"{value} ({CALL_STATUS.get(value, 'unknown')})"
    if name in TIME_FIELDS and isinstance(value, int) and value > 0:
        when = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{value} ({when})"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "\n".join(_value(name, v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, ""))
    return str(value)


def _show(result: ApiModel, as_json: bool, title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if as_json:
        typer.echo(json.dumps(result.raw, ensure_ascii=False, indent=2))
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in result.model_dump().items():
        if value is None or name == "status":
            continue
        # Text(): values such as "[...]" must not be read as rich markup.
        table.add_row(Text(name), Text(_value(name, value)))
    Console().print(table)


def call(
    phone: Annotated[str, typer.Argument(help="Number to call, digits with country code.")],
    code: Annotated[str | None, typer.Option(help="4-digit code (generated if omitted).")] = None,
    voice: Annotated[bool, typer.Option("--voice", help="Dictate the code by voice.")] = False,
    mix: Annotated[bool, typer.Option("--mix", help="Flash call, voice as fallback.")] = False,
    client: Annotated[str | None, typer.Option(help="Free text kept with the call.")] = None,
    unique: Annotated[
        str | None, typer.Option(help="Idempotency key (a UUID4 is generated if omitted).")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    service_id: ServiceIdOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a verification call (initCall)."""
    with _client(url, service_id, key) as api, _api_errors():
        result = api.init_call(phone, code=code, client=client, unique=unique, voice=voice, mix=mix)
    _show(result, as_json, "initCall")


def info(
    uid: Annotated[int, typer.Argument(help="uCaller id from `call`.")],
    url: UrlOpt = DEFAULT_URL,
    service_id: ServiceIdOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an authorisation (getInfo)."""
    with _client(url, service_id, key) as api, _api_errors():
        result = api.get_info(uid)
    _show(result, as_json, f"getInfo {uid}")


def repeat(
    uid: Annotated[int, typer.Argument(help="uCaller id to repeat.")],
    url: UrlOpt = DEFAULT_URL,
    service_id: ServiceIdOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Repeat a call for free (initRepeat)."""
    with _client(url, service_id, key) as api, _api_errors():
        result = api.init_repeat(uid)
    _show(result, as_json, "initRepeat")


def balance(
    url: UrlOpt = DEFAULT_URL,
    service_id: ServiceIdOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the account balance and tariff (getBalance)."""
    with _client(url, service_id, key) as api, _api_errors():
        result = api.get_balance()
    _show(result, as_json, "getBalance")


def lookup(
    phone: Annotated[str, typer.Argument(help="Number in any common format.")],
    url: UrlOpt = DEFAULT_URL,
    service_id: ServiceIdOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Standardise a number and look up its carrier (checkPhone; billed)."""
    with _client(url, service_id, key) as api, _api_errors():
        result = api.check_phone(phone)
    _show(result, as_json, "checkPhone")


def watch(
    uid: Annotated[int, typer.Argument(help="uCaller id from `call`.")],
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 90.0,
    url: UrlOpt = DEFAULT_URL,
    service_id: ServiceIdOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Poll getInfo until the call is decided; exit 0 only if it was reached."""
    from rich.console import Console

    # The live line goes to stderr so stdout stays the answer alone (also with --json).
    err_console = Console(stderr=True)
    polls = 0

    def show(current: GetInfo) -> None:
        nonlocal polls
        polls += 1
        label = CALL_STATUS.get(current.call_status, str(current.call_status))
        status.update(f"uid {uid}: {label} (poll {polls})")

    with (
        _client(url, service_id, key) as api,
        _api_errors(),
        err_console.status(f"uid {uid}: asking…") as status,
    ):
        result = api.wait(uid, max_wait=timeout, interval=interval, on_update=show)
    _show(result, as_json, f"getInfo {uid}")
    if result.pending:
        typer.echo(f"uid {uid}: still being checked after {timeout:g} s", err=True)
        raise typer.Exit(EXIT_PENDING)
    if not result.reached:
        typer.echo(f"uid {uid}: not reached", err=True)
        raise typer.Exit(EXIT_NOT_REACHED)


def verify(
    uid: Annotated[int, typer.Argument(help="uCaller id from `call`.")],
    code: Annotated[str, typer.Argument(help="The code the subscriber typed.")],
    url: UrlOpt = DEFAULT_URL,
    service_id: ServiceIdOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a code on the server (verifyCode, opencaller's extension); exit 1 if refused."""
    from ..client import CodeError, UcallerAPIError

    with _client(url, service_id, key) as api:
        try:
            result = api.verify_code(uid, code)
        except CodeError as err:
            left = "" if err.attempts_left is None else f" ({err.attempts_left} attempts left)"
            typer.echo(f"error {err.code}: {err.message}{left}", err=True)
            raise typer.Exit(EXIT_API_ERROR) from err
        except UcallerAPIError as err:
            typer.echo(f"error {err.code}: {err.message}", err=True)
            raise typer.Exit(EXIT_API_ERROR) from err
    _show(result, as_json, f"verifyCode {uid}")


def register(app: typer.Typer) -> None:
    """Add the client commands to the `opencaller` command line."""
    for command in (call, info, watch, repeat, balance, lookup, verify):
        app.command(command.__name__)(command)
