"""The ``numbering`` Typer sub-application, run in-process against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opencaller.cli.numbering import numbering_app


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"  # the command migrates a new file itself
    return str(request.getfixturevalue("postgres_url"))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(numbering_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_import_lookup_and_refusal(url: str, data: Path) -> None:
    files = [str(data / n) for n in ("ABC-3xx.csv", "ABC-4xx.csv", "DEF-9xx.csv")]
    code, out, _ = run("import", *files, "--replace-all", "--database-url", url)
    assert code == 0, out
    assert "imported 11 ranges from 3 file(s)" in out

    code, out, _ = run("import-mnp", str(data / "mnp.csv"), "--database-url", url)
    assert code == 0
    assert "imported 3 ported numbers" in out

    code, out, _ = run("lookup", "8 (909) 100-00-01", "--json", "--database-url", url)
    assert code == 0
    info = json.loads(out)
    assert info["phone"] == 79091000001
    assert info["is_mnp"] is True
    assert info["provider"] == "MegaFon"

    code, _, err = run("import", str(data / "DEF-9xx-malformed.csv"), "--database-url", url)
    assert code == 1
    assert "DEF-9xx-malformed.csv, line 4" in err
    assert "nothing was imported" in err
    code, out, _ = run("lookup", "+79091100000", "--database-url", url)
    assert code == 0
    assert "Пермь" in out  # the earlier import is still there

    code, _, err = run("lookup", "not a phone", "--database-url", url)
    assert code == 3
    assert "invalid phone number" in err


def test_offline_lookup_needs_no_database() -> None:
    code, out, _ = run("lookup", "+375 29 123-45-67", "--offline")
    assert code == 0
    assert "Беларусь" in out
