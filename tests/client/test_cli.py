"""The people's command line (`opencaller call`, `info`, `watch`…) against the live server."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from opencaller.cli.main import app

from .conftest import Live

runner = CliRunner()


def run(live: Live, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=live.env)
    return result.exit_code, result.stdout, result.stderr


def test_call_then_watch_until_reached(live: Live) -> None:
    code, out, err = run(live, "call", "79000000001", "--code", "0042", "--json")
    assert code == 0, err
    call = json.loads(out)
    assert call["code"] == "0042" and call["phone"] == "7900***0001"

    code, out, err = run(live, "watch", str(call["ucaller_id"]), "--interval", "0.05")
    assert code == 0, err
    assert "1 (reached)" in out
    assert "0042" in out


def test_watch_exits_non_zero_when_not_reached(live: Live) -> None:
    code, out, _ = run(live, "call", "79000000002", "--json")
    uid = json.loads(out)["ucaller_id"]
    code, out, err = run(live, "watch", str(uid), "--interval", "0.05", "--json")
    assert code == 3
    assert json.loads(out)["call_status"] == 0
    assert "not reached" in err


def test_call_shows_a_table(live: Live) -> None:
    code, out, err = run(live, "call", "79000000001", "--client", "bob", "--unique", "cli-key-1")
    assert code == 0, err
    assert "ucaller_id" in out and "7900***0001" in out and "cli-key-1" in out


def test_info_json_is_the_raw_answer(live: Live) -> None:
    code, out, _ = run(live, "call", "79000000001", "--json")
    uid = json.loads(out)["ucaller_id"]
    code, out, err = run(live, "info", str(uid), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["ucaller_id"] == uid
    assert info["status"] is True
    assert isinstance(info["phone_info"], list)


def test_balance(live: Live) -> None:
    code, out, err = run(live, "balance")
    assert code == 0, err
    assert "rub_balance" in out and "tariff_name" in out


def test_lookup(live: Live) -> None:
    code, out, err = run(live, "lookup", "+7 916 123-45-67", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["phone"] == 79161234567 and found["country_iso"] == "RU"


def test_api_errors_go_to_stderr_with_the_code(live: Live) -> None:
    code, out, err = run(live, "info", "987654321")
    assert code == 1
    assert out == ""
    assert err.strip() == "error 10: This id does not exist or you have no access to it"


def test_flags_override_the_environment(live: Live) -> None:
    result = runner.invoke(
        app, ["balance", "--key", "z" * 32], env={**live.env, "OPENCALLER_KEY": live.key}
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error 401: Authentication failed")


def test_missing_credentials_are_a_usage_error() -> None:
    result = runner.invoke(
        app, ["balance"], env={"OPENCALLER_SERVICE_ID": "", "OPENCALLER_KEY": ""}
    )
    assert result.exit_code == 2
    assert "credentials missing" in result.stderr
