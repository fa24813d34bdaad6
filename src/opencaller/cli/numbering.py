"""``opencaller numbering ...``: import the numbering registry and MNP data, look up numbers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:  # imported by the commands that use them: `--help` starts fast
    from sqlalchemy.ext.asyncio import AsyncEngine

    from opencaller.numbering.lookup import PhoneInfo
    from opencaller.numbering.registry import ImportResult


numbering_app = typer.Typer(
    help="Phone numbering directory: the Russian numbering plan registry, MNP, lookups.",
    no_args_is_help=True,
)

T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Database to use; default: the configured one (OPENCALLER_DATABASE_URL).",
        show_default=False,
    ),
]
Files = Annotated[
    list[Path],
    typer.Argument(exists=True, dir_okay=False, readable=True, help="Registry CSV file(s)."),
]


def _url(database_url: str | None) -> str:
    if database_url:
        return database_url
    from opencaller.config import load_settings

    return load_settings().database_url


def _run(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    from opencaller.storage.db import create_engine, migrate

    migrate(url)  # safe on every run; an import needs the tables

    async def main() -> T:
        engine = create_engine(url, pool_size=2)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _report(result: ImportResult) -> None:
    what = "ranges" if result.kind == "registry" else "ported numbers"
    typer.echo(f"imported {result.rows} {what} from {len(result.files)} file(s)")
    if result.categories:
        typer.echo("replaced categories: " + ", ".join(result.categories))
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)


@numbering_app.command("import")
def import_command(
    files: Files,
    database_url: DatabaseUrl = None,
    replace_all: Annotated[
        bool,
        typer.Option(
            "--replace-all", help="Drop every range first, not only the imported categories."
        ),
    ] = False,
) -> None:
    """Import ABC-3xx/ABC-4xx/ABC-8xx/DEF-9xx registry files in one transaction."""
    from opencaller.numbering.registry import RegistryFormatError, import_registry

    try:
        result = _run(
            _url(database_url),
            lambda engine: import_registry(engine, files, replace_all=replace_all),
        )
    except RegistryFormatError as exc:
        typer.echo(f"error: {exc}; nothing was imported", err=True)
        raise typer.Exit(1) from exc
    _report(result)


@numbering_app.command("import-mnp")
def import_mnp_command(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="MNP CSV file."),
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Replace the ported-numbers table (number;operator[;mnc]) in one transaction."""
    from opencaller.numbering.mnp import import_mnp
    from opencaller.numbering.registry import RegistryFormatError

    try:
        result = _run(_url(database_url), lambda engine: import_mnp(engine, file))
    except RegistryFormatError as exc:
        typer.echo(f"error: {exc}; nothing was imported", err=True)
        raise typer.Exit(1) from exc
    _report(result)


@numbering_app.command("lookup")
def lookup_command(
    phone: Annotated[str, typer.Argument(help="Phone number in any common notation.")],
    database_url: DatabaseUrl = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="libphonenumber only; no database.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print what the directory knows about PHONE (the checkPhone fields and more)."""
    from opencaller.numbering.lookup import PhoneDirectory, describe
    from opencaller.numbering.parse import InvalidPhoneNumber

    async def work(engine: AsyncEngine) -> PhoneInfo:
        return await PhoneDirectory(engine).lookup(phone)

    try:
        info = describe(phone) if offline else _run(_url(database_url), work)
    except InvalidPhoneNumber as exc:
        typer.echo(f"invalid phone number: {exc.message} ({exc.reason.value})", err=True)
        raise typer.Exit(3) from exc
    fields = asdict(info)
    if as_json:
        typer.echo(json.dumps(fields, ensure_ascii=False, indent=2))
        return
    width = max(len(key) for key in fields)
    for key, value in fields.items():
        typer.echo(f"{key:<{width}}  {value}")
