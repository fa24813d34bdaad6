"""verifyCode from the Python client and `opencaller verify`, against the live server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from opencaller.cli.main import app
from opencaller.client import AsyncClient, Client, CodeError

from .conftest import Live

runner = CliRunner()


def test_wrong_then_right_code(client: Client) -> None:
    call = client.init_call("79000000001", code="0042")
    with pytest.raises(CodeError) as wrong:
        client.verify_code(call.ucaller_id, "0043")
    assert wrong.value.code == 60 and wrong.value.attempts_left == 4
    ok = client.verify_code(call.ucaller_id, 42)  # an int is the code left-padded
    assert ok.verified is True and ok.attempts_left == 3 and ok.ucaller_id == call.ucaller_id
    info = client.get_info(call.ucaller_id)
    assert info.verified is True and info.verified_at == ok.verified_at
    with pytest.raises(CodeError) as again:
        client.verify_code(call.ucaller_id, "0043")
    assert again.value.code == 63 and again.value.attempts_left is None


async def test_async_attempts_run_out(aclient: AsyncClient) -> None:
    call = await aclient.init_call("79000000001", code="1234")
    for _ in range(5):
        with pytest.raises(CodeError):
            await aclient.verify_code(call.ucaller_id, "0000")
    with pytest.raises(CodeError) as out:
        await aclient.verify_code(call.ucaller_id, "1234")
    assert out.value.code == 61 and out.value.attempts_left == 0


def test_cli_verify(live: Live) -> None:
    made = runner.invoke(app, ["call", "79000000001", "--code", "7777", "--json"], env=live.env)
    uid = str(json.loads(made.stdout)["ucaller_id"])
    wrong = runner.invoke(app, ["verify", uid, "1111"], env=live.env)
    assert wrong.exit_code == 1 and wrong.stdout == ""
    assert wrong.stderr.strip() == "error 60: Wrong code (4 attempts left)"
    ok = runner.invoke(app, ["verify", uid, "7777", "--json"], env=live.env)
    assert ok.exit_code == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["verified"] is True and body["attempts_left"] == 3
    table = runner.invoke(app, ["verify", uid, "7777"], env=live.env)
    assert table.exit_code == 0 and "verified_at" in table.stdout and "UTC" in table.stdout


def test_a_retried_check_spends_one_attempt(client: Client) -> None:
    call = client.init_call("79000000001", code="5555")
    with pytest.raises(CodeError) as first:
        client.verify_code(call.ucaller_id, "0000", unique="retry-1")
    with pytest.raises(CodeError) as again:  # what a retry after a lost answer sends
        client.verify_code(call.ucaller_id, "0000", unique="retry-1")
    assert first.value.attempts_left == again.value.attempts_left == 4
    with pytest.raises(CodeError) as other:
        client.verify_code(call.ucaller_id, "0000")  # a fresh key of its own
    assert other.value.attempts_left == 3
